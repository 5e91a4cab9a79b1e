"""VM templates: every pod of one VM shape restored from one booted, saved VM.

A guest that booted its kernel and init and waits for its pod is the same for every pod
of the same shape (stage1 kernel and initramfs, QEMU, machine, accelerator, vCPUs,
memory, devices). The first pod of a shape makes a template: a QEMU boots it with the
guest RAM in a file (`memory-backend-file,share=on` on a tmpfs), the init says "ready"
on the rkt.go port before it mounts anything, and QEMU's device state is saved with the
`x-ignore-shared` migration capability (the RAM stays in the file, the state is ~0.7
MB). Then every pod, the first one included, is a new QEMU with the same devices and
the pod's own backends (shares, taps, sockets, fds), its RAM mapped privately from the
template's file (copy-on-write: what a pod never writes stays shared, the file never
changes), its state loaded over QMP; the host sends "go" with the time, RNG seed bytes
and the NICs' MACs, and the init goes on as after a boot.

    shape.py    pure: a pod's VmPlan -> the template's and the restore's VmPlan, the key
    store.py    the store: folders, keys, locks, validity, `rkt gc`
    build.py    making a template (a template QEMU, booted and saved)
    restore.py  a pod restored from its template (the runner's entry)

Off with `--kvm-template=off` (the stage1 flag), the pod annotation
`coreos.com/rkt/stage1/kvm/template=off`, or `RKT_KVM_TEMPLATE=off` in the environment
(the first of these that is set wins); see docs/kvm.md for the trade-off. Nor is there
one when the stage1 image's guest (its rkt-exec and init, in the initramfs, built with
the image) speaks another protocol than this rkt's host side (`skew`): its guest would
refuse the restore's "go", and the template would be made for nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ANN_TEMPLATE = "coreos.com/rkt/stage1/kvm/template"
ENV_TEMPLATE = "RKT_KVM_TEMPLATE"
FLAG_TEMPLATE = "kvm-template"
DEFAULT = True
_WORDS = {"on": True, "true": True, "1": True, "yes": True,
          "off": False, "false": False, "0": False, "no": False}
# kvm/template-protocol holds a number and a newline; the image is hostile.
PROTOCOL_MAX_BYTES = 16


def parse_switch(value: str | None) -> bool | None:
    """"on"/"off" (and true/false, 1/0, yes/no) -> bool; None for None or anything else."""
    return None if value is None else _WORDS.get(value.strip().lower())


def refused(hypervisor: str, annotations: Mapping[str, str], flag: bool | None) -> str:
    """Why this pod boots without a template ("" when it uses one): the stage1 flag, the
    pod annotation, the environment, in that order, else the default."""
    if hypervisor != "qemu":
        return f"hypervisor {hypervisor} has none (QEMU only)"
    for value, where in (
        (flag, f"--{FLAG_TEMPLATE}"),
        (parse_switch(annotations.get(ANN_TEMPLATE)), f"annotation {ANN_TEMPLATE}"),
        (parse_switch(os.environ.get(ENV_TEMPLATE)), ENV_TEMPLATE),
    ):
        if value is not None:
            return "" if value else f"off by {where}"
    return "" if DEFAULT else "off by default"


def guest_protocol(stage1_rootfs: Path) -> int | None:
    """The template protocol a stage1 image's guest speaks, as the stage1 build wrote it
    beside its initramfs (assets.PROTOCOL); None when the image does not say (built
    before images said it) or says it in no readable way: not a regular file (a
    symlink, followed by nothing), bigger than PROTOCOL_MAX_BYTES, not a number."""
    from pyrkt.linux import beneath
    from pyrkt.stage1.kvm import assets

    try:
        raw = beneath.read_file(stage1_rootfs, f"{assets.ASSET_DIR}/{assets.PROTOCOL}",
                                PROTOCOL_MAX_BYTES)
    except OSError:
        return None
    text = raw.strip()
    return int(text) if text.isdigit() else None


def skew(stage1_rootfs: Path) -> str:
    """Why the stage1 image in stage1_rootfs gets no template ("" when it can have one):
    its guest speaks another template protocol than this rkt (shape.PROTOCOL), or does
    not say which."""
    from pyrkt.stage1.kvm.templates.shape import PROTOCOL

    said = guest_protocol(stage1_rootfs)
    if said == PROTOCOL:
        return ""
    speaks = ("does not say which template protocol it speaks" if said is None
              else f"speaks template protocol {said}")
    return (f"the stage1 image's guest {speaks}, this rkt speaks {PROTOCOL}; "
            "rebuild the image with `rkt stage1 build`")
