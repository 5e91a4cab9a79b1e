"""Starting the hypervisor: in its jail (jail.py, rkt-jail.c) or, for lkvm and with
PYRKT_KVM_JAIL=off, as a plain child.

Confined, the hypervisor is the first process of a new PID namespace, started with
`subprocess.Popen` (no `preexec_fn`: the fast spawn path), so its host pid is the one
Popen returns (POD/pid) and it stays the runner's child (then rkt-wait's). Its memory
cgroup is made here and removed once it exited (`remove_groups`), by whoever waits for
it: the runner in-process, rkt-wait (RKT_WAIT_RMDIR) or waiter.py; `rkt gc` removes
what a killed waiter left.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from pyrkt.errors import RktError
from pyrkt.stage1 import contract
from pyrkt.stage1.kvm import assets, hypervisors
from pyrkt.stage1.kvm.vm import VmPlan

ENV_JAIL = "PYRKT_KVM_JAIL"


def jail_enabled(name: str) -> bool:
    """QEMU runs confined unless PYRKT_KVM_JAIL=off (to tell a confinement failure from
    another); lkvm, never run on these machines, is not confined."""
    return name == hypervisors.HypervisorName.QEMU and os.environ.get(ENV_JAIL) != "off"


def confine(pod: Path, uuid: str, vp: VmPlan, found: Path, argv: list[str],
            env: dict[str, str], fds: list[int], netns: Path | None, cache: Path
            ) -> tuple[list[str], list[Path]]:
    """The hypervisor's command line in its jail, its memory cgroup made, the seccomp
    program in an fd added to fds (env gets what the hypervisor needs); and the groups
    to remove after it. found: the hypervisor as found on the PATH (absolute)."""
    from pyrkt.linux.cgroup import Limits, PodCgroups
    from pyrkt.stage1.kvm import hvexec, jail

    # The hypervisor and the launcher from the stage1 image's own tree, never from the
    # pod's writable copy (the guest's share).
    s1 = contract.stage1_image_rootfs(pod)
    with contextlib.suppress(ValueError):  # a bundled QEMU found in the pod's copy
        found = s1 / found.relative_to(contract.stage1_rootfs(pod))
    exe = hvexec.for_path(found, argv[0], s1, cache)
    env.update(exe.env)
    cg = PodCgroups(uuid)
    groups = cg.leaf_and_pod_dirs(jail.CGROUP_LEAF)
    try:
        cg.create(jail.CGROUP_LEAF, Limits(memory=jail.memory_limit(vp)))
    except OSError as e:
        remove_groups(groups)
        raise RktError(f"cannot make the VM's memory cgroup: {e}") from e
    j = jail.for_pod(pod, vp, exe.files, netns, tuple(cg.join_files(jail.CGROUP_LEAF)))
    fd = os.memfd_create("rkt-jail-seccomp", os.MFD_CLOEXEC)
    fds.append(fd)
    os.write(fd, jail.setid_filter())
    os.lseek(fd, 0, os.SEEK_SET)
    launcher = assets.jail_path(s1)
    return jail.launcher_argv(launcher, j, [*exe.argv0, *argv[1:]], fd), groups


def start(argv: list[str], pod: Path, env: dict[str, str], interactive: bool,
          fds: list[int], jailed: bool) -> subprocess.Popen[bytes]:
    """Start the hypervisor (jailed: as the init of a new PID namespace)."""
    from pyrkt.linux import ns

    with ns.children_in_new_pid_namespace() if jailed else contextlib.nullcontext():
        return subprocess.Popen(
            argv,
            cwd=pod,
            env=env,
            stdin=None if interactive else subprocess.DEVNULL,
            stdout=None,
            stderr=None,
            pass_fds=fds,
        )


def remove_groups(groups: list[Path]) -> None:
    """Remove the hypervisor's cgroups once it is gone (leaf first; a busy one stays
    for `rkt gc`)."""
    for d in groups:
        with contextlib.suppress(OSError):
            d.rmdir()
