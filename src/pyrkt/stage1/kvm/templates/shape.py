"""What a template is made of, as pure functions of the pod's `VmPlan`.

A pod restores into its template only if QEMU's device layout is the same on both
sides; what differs is only backends, which are not migrated: the shares' folders, the
taps, the sockets and files of the serial ports, the fds, the disks behind the disk
slots. A template has SLOTS virtio-blk devices probed at its boot, each backed by an
empty placeholder (zeros, writes dropped: `hypervisors/qemu.slot_args`); a pod
restored from it has the same devices with its own disks behind the first ones
(Firecracker's way: the drives are in the snapshot, their files swapped per VM), and
what does not fit (more disks than slots, a disk bigger than a slot) is hot-plugged
after the restore. So the template's plan is the pod's plan with empty slots for disks
and the template's own backends (`template_plan`), the restore's plan is the pod's plan
with its disks in the slots, the template's RAM file and `-incoming` (`restore_plan`),
and the key hashes the template's command line with placeholders for its files (`key`):
any change of machine, accelerator, vCPUs, memory, devices or kernel command line, in
the pod or in the driver's code, gives another key, as do other kernel, initramfs or
QEMU files. Every console mode has the same devices (`uniform_devices`) and there is no
balloon (see `restore_plan`), so one template serves interactive and --debug pods too,
on 9p or on disks.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pyrkt.record import replace
from pyrkt.stage1.kvm.guest.script import DiskTarget
from pyrkt.stage1.kvm.vm import DISK_SLOT_BYTES, ConsoleMode, Disk, MemoryFile, Share, Tap, VmPlan

# The guest side of the handshake (rkt-exec --go: "ready", "go", "ok"): bump
# when it changes, so that no template made by another version is used. A stage1
# image records its guest's (kvm/template-protocol, written by the build:
# assets.populate_stage1_rootfs); the host makes no template from an image whose
# guest speaks another (templates.skew).
PROTOCOL = 4
# TCG's translation cache of a restored pod (MiB; a booted one has runner.TCG_TB_MIB): a
# restore runs code a boot translated long before (in the template's QEMU: translations
# are no part of the saved state), and 16 MiB thrashed: `rkt run /bin/true` restored
# (on disks) in 0.34 s with 32 MiB, 0.41-0.43 s with 16, 0.54 with 12, 0.67 with 8
# (bench/kvm_boot.py --peer, run by run; BENCHMARKS.md); it
# costs an idle restored pod ~3 MiB of PSS (48.0 against 44.9 MiB, 8 pods). Not in the
# key: the cache is no part of the migrated state.
RESTORED_TCG_TB_MIB = 32
# A template's disk slots: most pods have one app and no `empty` volume; each slot costs
# the template's boot a virtio-blk probe, and every restore its device state (~1 ms).
SLOTS = 4
# A template's files, relative to its folder (the template QEMU's cwd).
SHARE = "share"  # an empty folder behind every 9p device
SERIAL_LOG = "serial.log"
KERNEL_HEAD = "kernel-head"  # what a restoring QEMU loads as its kernel (kernel_head)
AGENT_SOCKET = "agent.sock"
TTY_SOCKET = "tty.sock"
# In the key's command line, for what only the build knows.
_RAM = Path("RAM")
_FD = -1


def template_mac(index: int) -> str:
    """The MAC of a template's NIC index (locally administered); the pod's is set in
    the guest after the restore (`go_line`)."""
    return f"02:72:6b:74:00:{index:02x}"


def template_plan(vp: VmPlan, cmdline: Sequence[str]) -> VmPlan:
    """The template for vp's shape: vp's devices with empty disk slots for its disks,
    the template's own backends (files in its folder, NICs without a backend), its RAM
    in a shared file, booted with cmdline. RAM file and fds are placeholders until the
    build sets them. No pod's disk: a restore puts them in the slots (`restore_plan`),
    so pods on 9p and on disks share one template."""
    return _templated(
        vp, cmdline, MemoryFile(_RAM, shared=True), go_fd=_FD, qmp_fd=_FD, incoming=False,
        disks=(), disk_slots=(None,) * SLOTS,
        shares=tuple(Share(s.tag, Path(SHARE), read_only=True) for s in vp.shares),
        taps=tuple(Tap("", template_mac(i)) for i in range(len(vp.taps))),
        console=ConsoleMode.STREAMS,
        serial_log=Path(SERIAL_LOG),
        serial_to_stderr=False,
        app_stdout=None,
        app_stderr=None,
        app_log_dir=None,
        fd_sets=(),
        agent_socket=Path(AGENT_SOCKET),
        tty_socket=Path(TTY_SOCKET),
        qmp_socket=None,
        pidfile=None,
    )


def restore_plan(vp: VmPlan, cmdline: Sequence[str], ram: Path, kernel: Path, go_fd: int,
                 qmp_fd: int, sizes: Mapping[str, int]) -> VmPlan:
    """The pod's VM restored from a template: vp with the template's devices (and its
    kernel command line: the guest booted with it; QEMU only keeps it for a reboot, which
    ends a pod), its RAM mapped privately from ram, its state to come over QMP, and as
    its kernel only the template kernel's head (`kernel_head`), no initramfs. Its disks
    go into the template's slots (`slotted`; sizes: each disk's size in bytes, by id);
    the others are not on its command line: the restore hot-plugs them over QMP once
    the VM runs (`disks_hotplugged`).

    No balloon: QEMU 7.2 gives the pages a balloon reports free back by punching holes
    in the RAM file (`ram_block_discard_range`), which would zero them in the template
    under every other pod; QEMU 8.2 only drops the pod's private copies."""
    slots, rest = slotted(vp.disks, sizes)
    tb = max(vp.tcg_tb_mib, RESTORED_TCG_TB_MIB) if vp.tcg_tb_mib else vp.tcg_tb_mib
    return _templated(vp, cmdline, MemoryFile(ram, shared=False), go_fd=go_fd, qmp_fd=qmp_fd,
                      incoming=True, kernel=kernel, initrd=None, disk_slots=slots,
                      disks=rest, disks_hotplugged=True, tcg_tb_mib=tb)


def slotted(disks: Sequence[Disk], sizes: Mapping[str, int],
            ) -> tuple[tuple[Disk | None, ...], tuple[Disk, ...]]:
    """The SLOTS disk slots of a restore (the first disks that fit, in order; None: an
    empty slot) and the disks to hot-plug: those beyond the slots, and those bigger than
    a slot's capacity (or of unknown size), which the guest, having read the slot's
    size at the template's boot, would see cut."""
    slots: list[Disk | None] = []
    rest: list[Disk] = []
    for d in disks:
        if len(slots) < SLOTS and 0 < sizes.get(d.id, 0) <= DISK_SLOT_BYTES:
            slots.append(d)
        else:
            rest.append(d)
    return (*slots, *(None,) * (SLOTS - len(slots))), tuple(rest)


def _templated(vp: VmPlan, cmdline: Sequence[str], ram: MemoryFile, *, go_fd: int,
               qmp_fd: int, incoming: bool, **other: object) -> VmPlan:
    """vp as a template or a restore has it: the same devices in every console mode, no
    balloon, RAM in a file, the go and QMP sockets; other: the rest that differs."""
    return replace(vp, cmdline=tuple(cmdline), balloon=False, uniform_devices=True,
                   memory_file=ram, go_fd=go_fd, qmp_fd=qmp_fd, incoming=incoming,
                   **other)


def kernel_head(kernel: bytes) -> bytes:
    """What a restoring QEMU needs of the template's kernel: a bzImage's setup sectors
    and a little of its code. QEMU reads its `-kernel` whole into its memory (2.5 MB per
    pod of the tailored kernel, for a guest that booted long ago); with a head of the
    same kernel it adds the same boot ROM (the RAM blocks must match the template's), and
    keeps 20 KB. Anything that is not a bzImage is kept whole."""
    if len(kernel) < 0x300 or kernel[0x202:0x206] != b"HdrS":
        return kernel
    setup = (kernel[0x1F1] or 4) + 1
    return kernel[: (setup + 8) * 512]


def key(argv: Sequence[str], files: Sequence[Sequence[object]]) -> str:
    """The template key: argv is the driver's command line for `template_plan` (with
    its placeholders), files what identifies the kernel, initramfs and QEMU."""
    text = json.dumps({"protocol": PROTOCOL, "argv": list(argv),
                       "files": [list(f) for f in files]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def keyed_plan(tplan: VmPlan) -> VmPlan:
    """tplan with its kernel and initramfs named by role (their content is in `key`'s
    files, their paths differ per pod)."""
    return replace(tplan, kernel=Path("KERNEL"), initrd=Path("INITRD"))


def qemu_files(binary: str, found: Path, pod: Path) -> list[list[object]]:
    """What identifies the QEMU that restores: the executable found on the PATH (a
    bundled one lives in the pod's stage1 tree: its path is named relative to the pod)
    and the file it resolves to, by size and mtime; the host's firmware (a size change
    of a ROM breaks a restore)."""
    out: list[list[object]] = [[binary]]
    paths = [found, found.resolve()]
    paths += [Path("/usr/share/seabios/bios-256k.bin"), Path("/usr/share/qemu/kvmvapic.bin"),
              Path("/usr/share/qemu/linuxboot_dma.bin")]
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        name = str(p).replace(str(pod), "POD", 1)
        out.append([name, st.st_size, st.st_mtime_ns])
    out.append([os.uname().release])  # KVM's CPU model follows the host kernel
    return out


def go_line(now_ns: int, seed: bytes, macs: Sequence[tuple[str, str]],
            disks: Sequence[DiskTarget] = ()) -> bytes:
    """The "go" a restored guest gets: the time, seed bytes for its RNG, per NIC the
    template's MAC and the pod's, and the pod's disks (serial number, read-ahead, where
    in the guest), which rkt-exec --go mounts in the background while the init mounts
    its shares, and moves into place once they are (guest/script.py disk_lines)."""
    words = ["go", str(now_ns // 1_000_000_000), str(now_ns % 1_000_000_000), seed.hex()]
    words += [f"{old}={new}" for old, new in macs]
    words += [f"disk={d.serial}:{d.read_ahead_kb}:{d.target}" for d in disks]
    return (" ".join(words) + "\n").encode()
