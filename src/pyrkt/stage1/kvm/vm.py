"""The VM plan: everything a hypervisor needs to boot one pod, computed on the host.

A `VmPlan` is pure data; `hypervisors.<name>.argv(plan)` turns it into a command line.
NET adds `taps` (and runs the hypervisor inside the pod's netns); the guest side gets
its addresses through the pod script.
"""

from __future__ import annotations

import enum
from pathlib import Path

from pyrkt.record import record


class Accel(enum.StrEnum):
    KVM = "kvm"
    TCG = "tcg"


class Machine(enum.StrEnum):
    PC = "pc"
    MICROVM = "microvm"


class ConsoleMode(enum.StrEnum):
    """How the app's stdio reaches the user."""

    STREAMS = "streams"  # app stdout/stderr on virtio-serial ports -> host fds 1 and 2
    INTERACTIVE = "interactive"  # the app owns ttyS1 = QEMU's stdio (Ctrl-a x leaves)
    # The app owns ttyS1 = QEMU's stdio, a terminal someone else holds (the OCI runtime's
    # console socket): no escape key, no QEMU monitor on it.
    TERMINAL = "terminal"


# Guest-visible names; the guest finds ports by their number on the one virtio-serial bus.
PORT_STDOUT = 1
PORT_STDERR = 2
PORT_AGENT = 3
PORT_TTY = 4  # `rkt enter` with a terminal (agent.py, ttysession.py)
PORT_GO = 5  # a template's "ready" and a restored pod's "go" (templates/)
SHARE_STAGE1 = "rkt.stage1"
SHARE_CTL = "rkt.ctl"


@record
class Share:
    """A host folder exported to the guest over virtio-9p."""

    tag: str
    path: Path
    read_only: bool = False
    recursive: bool = True  # False: without what is mounted below path (needs the jail)


@record
class Disk:
    """A virtio-blk disk (docs/kvm.md "Root filesystems on disks"): a raw base image,
    opened read-only (shared by every pod of an image), under a chain of qcow2 layers
    each backed by the one before; QEMU writes only to the last layer (none: the base
    alone, read-only, unless `scratch`: a raw disk the guest writes, as `rkt export`'s
    VM its output). `id` is its node name and its virtio serial number: the guest finds
    the disk by it (/sys/block/vd*/serial), at a boot or after a hot-plug."""

    id: str
    base: Path
    layers: tuple[Path, ...] = ()
    scratch: bool = False


# The capacity of an empty disk slot (VmPlan.disk_slots): the guest reads a virtio-blk
# disk's size once, when it probes the template's device, and keeps it; a pod's disk
# goes into a slot only if it is at most that big (else it is hot-plugged). 1 TiB: an
# image's ext4 is twice its tree plus 8 GiB (image/fsimage.py), so only a tree of more
# than 500 GiB is hot-plugged; a sparse file of more than 16 TiB, which a test of that
# path would need, cannot be made on a host's ext4.
DISK_SLOT_BYTES = 1 << 40


@record
class Tap:
    """A tap device (created by NET inside the pod netns) given to the guest as a NIC."""

    ifname: str
    mac: str


@record
class MemoryFile:
    """Guest RAM in a file (templates/): a template maps it shared (its boot fills the
    file), a pod restored from it privately (copy-on-write: the pod's writes never reach
    the file, the pages it only reads stay shared with every pod of that template)."""

    path: Path
    shared: bool


@record
class VmPlan:
    kernel: Path
    initrd: Path | None  # None: a restore, whose guest has its kernel and files already
    cmdline: tuple[str, ...]
    vcpus: int
    memory_mib: int
    accel: Accel
    machine: Machine = Machine.PC
    shares: tuple[Share, ...] = ()
    disks: tuple[Disk, ...] = ()
    # The disks are hot-plugged over QMP once QEMU runs (a pod restored from a template
    # with more disks than slots, or one too big for a slot: templates/restore.py), not
    # on the command line; its jail still holds their files.
    disks_hotplugged: bool = False
    # A template's virtio-blk disk slots (templates/shape.py): devices that are part of
    # its layout, each holding a disk of the pod (restored into the template) or, None,
    # an empty placeholder (zeros, writes dropped). After the shares, before `disks`.
    disk_slots: tuple[Disk | None, ...] = ()
    taps: tuple[Tap, ...] = ()
    console: ConsoleMode = ConsoleMode.STREAMS
    # STREAMS with our stdin a terminal: QEMU reads it for its escape key (Ctrl-a x
    # leaves the pod, as the seed says), on a ttyS1 no app uses; Ctrl-C stays a signal.
    escape_key: bool = False
    serial_log: Path | None = None  # kernel + init messages always land here
    serial_to_stderr: bool = False  # --debug: also show them on stderr
    app_stdout: Path | None = None  # a file, /proc/self/fd/1 or /dev/fdset/N
    app_stderr: Path | None = None
    # QEMU also copies the apps' stdout/stderr into stdout.log/stderr.log here (rkt #2664)
    app_log_dir: Path | None = None
    fd_sets: tuple[tuple[int, int], ...] = ()  # (inherited fd, fd set) for /dev/fdset/N
    agent_socket: Path | None = None  # unix socket, QEMU is the server
    tty_socket: Path | None = None  # the same, for the rkt.tty port
    qmp_socket: Path | None = None
    pidfile: Path | None = None
    bios: Path | None = None
    # A virtio balloon that never inflates, with free page reporting: the guest hands the
    # pages it freed (boot buffers, the initramfs image, exited apps) back to the host.
    balloon: bool = False
    # TCG's translation-block cache in MiB (QEMU's default: up to 1 GiB, which the
    # guest fills with code it translated: a third of QEMU's RSS). None: QEMU's default.
    tcg_tb_mib: int | None = None
    # Templates (templates/): guest RAM in a file; a connected socket for the rkt.go port
    # and one for QMP (passed fds: no socket path to race for); `-incoming defer` (the
    # VM's state comes over QMP); and the devices of every console mode (both serial
    # ports, the app output ports), the layout a pod of any console mode restores into.
    memory_file: MemoryFile | None = None
    go_fd: int | None = None
    qmp_fd: int | None = None
    incoming: bool = False
    uniform_devices: bool = False
    # The hypervisor's own syscall filter (QEMU's -sandbox: no obsolete calls, no
    # privilege changes, no new processes, no scheduler changes), part of its jail.
    sandbox: bool = False
    extra_args: tuple[str, ...] = ()

    def all_disks(self) -> tuple[Disk, ...]:
        """Every disk of the pod: in a slot, on the command line or hot-plugged."""
        return (*(d for d in self.disk_slots if d is not None), *self.disks)
