"""`rkt-runtime`: an OCI runtime (runc's command line) whose containers run in VMs.

containerd's runc shim, podman's conmon and Kubernetes (through containerd's CRI plugin
and a RuntimeClass) drive an OCI runtime binary with runc's verbs: `create`, `start`,
`state`, `kill`, `delete`, `exec`, `ps`, `features`. This package implements them on
the kvm stage1's machinery: a bundle's `config.json` becomes the same `PodPlan` that
`rkt run` hands the kvm stage1 (`stage1/plan.py`), and `stage1/kvm/runner.run_pod`
boots it. The bundle's rootfs is the app's rootfs; no image store is involved.

    cli.py        the command line (the only place that prints or exits)
    spec.py       config.json -> typed records (unknown shapes refused with their key)
    plan.py       records -> PodPlan + what the runtime does around the VM (pure rules)
    state.py      the per-container state folder under --root, the OCI state JSON
    container.py  create / start / kill / delete, and the container process itself
    execproc.py   exec: a process in the running VM through the guest agent (the
                  control share's files through pyrkt.linux.beneath)
    console.py    --console-socket: a pty whose master goes to the caller
    netattach.py  an existing network namespace (CNI's) handed to the VM as taps

See docs/oci-runtime.md.
"""
