"""QEMU's confinement as data (`Jail`), carried out at launch by rkt-jail (rkt-jail.c).

A confined hypervisor (docs/security.md says why each, and compares with Firecracker's
jailer and Kata):
- sees only `Jail.files`: its own mount namespace whose root is an empty read-only tmpfs
  holding those host paths bound at the same place (so the QEMU command line stays the
  pure `VmPlan -> argv` of hypervisors/qemu.py), the symlinks that lead to them, and a
  procfs of its own PID namespace; every bind nosuid and nodev, and noexec but for the
  hypervisor's own binary and libraries;
- runs as the init of its own PID namespace (the runner unshares it for its child, so
  the hypervisor's host pid is still POD/pid and rkt-wait's child), in its own IPC, UTS
  and cgroup namespaces, and in its own empty network namespace unless the pod has
  networks (then in the pod's);
- keeps only KEEP_CAPS (bounding set too), with no_new_privs, QEMU's `-sandbox` and the
  SETID filter: no file may get S_ISUID or S_ISGID, so nothing the guest writes in a
  host volume can run with another user's rights on the host; without CAP_MKNOD and
  CAP_SETFCAP the guest can make no device node and set no file capability either;
- is in the pod's memory cgroup leaf (`CGROUP_LEAF`), limited to the VM's memory plus
  OVERHEAD_MIB;
- is killed (SIGKILL) when its parent, the runner or rkt-wait, dies.

`for_pod` gives the jail of one pod's VM (pure); a caller may extend `files` (a VM
template's RAM file, say) with `pyrkt.record.replace`. `launcher_argv` turns it into
the rkt-jail command line; it reads the file system only to follow the symlinks on the
way to each file (the jail recreates them).
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from pathlib import Path

from pyrkt.errors import RktError
from pyrkt.record import record
from pyrkt.stage1.kvm.vm import Accel, VmPlan


class Access(enum.StrEnum):
    """How a host path is bound into the jail (rkt-jail's option of the same name)."""

    RO = "ro"  # read-only, not executable (firmware, kernel, initrd, a template's state)
    EXEC = "exec"  # read-only, executable (the hypervisor binary, its libraries, modules)
    RW = "rw"  # read-write, not executable (the shares, the pod's kvm/ and logs/)
    DEV = "dev"  # a device node (read-only mount; the node itself opens read-write)


# A bind of the key also grants these to what lies below it (no nested bind needed).
_COVERS: dict[Access, frozenset[Access]] = {
    Access.RO: frozenset({Access.RO}),
    Access.EXEC: frozenset({Access.EXEC, Access.RO}),
    Access.RW: frozenset({Access.RW, Access.RO}),
    Access.DEV: frozenset(),
}

# What QEMU and its 9p server (security_model=passthrough) need as root: CHOWN to give
# the guest's files their owner, DAC_OVERRIDE to read and write the guest's files of
# any owner and mode, FOWNER to chmod, utime, link and unlink (sticky folders) them.
# Not kept, among others: MKNOD (guest device nodes), SETFCAP (file capabilities), FSETID
# (a write or chown by QEMU clears setuid/setgid bits), SETUID/SETGID, SYS_ADMIN,
# NET_ADMIN (attaching to the pod's existing tap needs none), DAC_READ_SEARCH.
KEEP_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER")
CGROUP_LEAF = "hypervisor"
# QEMU's memory beyond the guest's RAM, measured under TCG with the guest's RAM all
# touched (docs/security.md): 40 MiB for a 256 MiB VM, 52 MiB for 1 GiB. The limit leaves
# three times that: OVERHEAD_MIB plus 1/OVERHEAD_DIVISOR of the VM's memory (page tables
# and KVM's grow with it). Page cache of the shares is charged too, and reclaimed there.
OVERHEAD_MIB = 160
OVERHEAD_DIVISOR = 16
# Device nodes every VM may open (getrandom() is QEMU's own source; /dev/urandom and
# /dev/null are kept for libraries that fall back to them).
DEVICES = (Path("/dev/null"), Path("/dev/urandom"))
KVM_DEVICE = Path("/dev/kvm")
TUN_DEVICE = Path("/dev/net/tun")

# Each call that can give a file S_ISUID or S_ISGID, and the index of its mode argument.
# (mkdir ignores both bits; QEMU's 9p sets modes with chmod("/proc/self/fd/N").)
SETID_MODE_ARGS = {"chmod": 1, "fchmod": 1, "fchmodat": 2, "open": 2, "openat": 3,
                   "creat": 1, "mknod": 1, "mknodat": 2}
FCHMODAT2_NR = 452  # Linux 6.6: newer than the syscall table (Debian 12's headers)
# Calls whose mode argument the filter cannot see: refused with ENOSYS, so QEMU and its
# libraries fall back to the calls above (io_uring: QEMU's event loop uses epoll then).
UNSEEN_MODE = ("io_uring_setup", "io_uring_enter", "io_uring_register", "openat2")


@record
class Jail:
    """What the hypervisor may see and do. `chdir` (its working folder) is also where
    the jail's root is mounted before pivot_root: an existing folder, not /."""

    files: tuple[tuple[Path, Access], ...]
    chdir: Path
    # folders of files shown without what is mounted below them on the host (the
    # shares of recursive=false volumes): a bind of their own, not a recursive one
    flat: tuple[Path, ...] = ()
    netns: Path | None = None  # None: a new, empty network namespace
    cgroups: tuple[Path, ...] = ()  # group files (v1 tasks, v2 cgroup.procs) to join
    caps: tuple[str, ...] = KEEP_CAPS
    setid_filter: bool = True
    die_with_parent: bool = True


def for_pod(pod: Path, vp: VmPlan, hypervisor: tuple[tuple[Path, Access], ...],
            netns: Path | None = None, cgroups: tuple[Path, ...] = ()) -> Jail:
    """The jail of a pod's VM: the pod's kvm/ (sockets, serial log, the control share)
    and logs/, the shares, the disks' files (only a disk's last layer writable, also for
    disks in a template's slots or hot-plugged after a restore), kernel and initrd (a
    restore's: its template's kernel head and RAM file; its state comes as an fd), the
    hypervisor's own files, the devices."""
    files: list[tuple[Path, Access]] = [(pod / "kvm", Access.RW)]
    if vp.app_log_dir is not None:
        files.append((pod / vp.app_log_dir, Access.RW))
    files += [(s.path, Access.RO if s.read_only else Access.RW) for s in vp.shares]
    for d in vp.all_disks():  # the image's ext4 stays read-only: every pod of the image reads it
        files.append((d.base, Access.RW if d.scratch and not d.layers else Access.RO))
        files += [(p, Access.RW if p == d.layers[-1] else Access.RO) for p in d.layers]
    files.append((vp.kernel, Access.RO))
    if vp.initrd is not None:
        files.append((vp.initrd, Access.RO))
    if vp.memory_file is not None:
        # A template's RAM file (templates/): QEMU 7.2 maps a file privately only if it
        # opened it read-write (8.1's readonly=on,rom=off would not need it).
        files.append((vp.memory_file.path, Access.RW))
    if vp.bios is not None:
        files.append((vp.bios, Access.RO))
    files += hypervisor
    files += [(d, Access.DEV) for d in DEVICES]
    if vp.accel is Accel.KVM:
        files.append((KVM_DEVICE, Access.DEV))
    if vp.taps:
        files.append((TUN_DEVICE, Access.DEV))
    flat = tuple(s.path for s in vp.shares if not s.recursive)
    return Jail(files=tuple(files), chdir=pod, flat=flat, netns=netns, cgroups=cgroups)


def memory_limit(vp: VmPlan) -> int:
    """The hypervisor's memory cgroup limit in bytes: the VM's RAM plus QEMU's own."""
    return (vp.memory_mib + OVERHEAD_MIB + vp.memory_mib // OVERHEAD_DIVISOR) << 20


def setid_filter() -> bytes:
    """The seccomp program refusing S_ISUID/S_ISGID on any file (EPERM), x86_64."""
    from pyrkt.linux import seccomp
    from pyrkt.linux.syscalls_x86_64 import SYSCALLS_X86_64 as nr

    mode_arg = {nr[name]: i for name, i in SETID_MODE_ARGS.items()}
    mode_arg[FCHMODAT2_NR] = 2
    return seccomp.mode_bits_program(mode_arg, stat.S_ISUID | stat.S_ISGID, errno.EPERM,
                                     deny=[nr[name] for name in UNSEEN_MODE])


def launcher_argv(launcher: Path, jail: Jail, argv: list[str],
                  seccomp_fd: int | None = None) -> list[str]:
    """rkt-jail's command line that starts argv (argv[0] an absolute path) in the jail;
    seccomp_fd: an fd the child inherits holding `setid_filter()`."""
    from pyrkt.linux.caps import mask_of

    if jail.chdir == Path("/"):
        raise RktError("the jail's working folder cannot be /")
    a = [str(launcher)]
    if jail.die_with_parent:
        a.append("--pdeathsig")
    if seccomp_fd is not None:
        a += ["--seccomp-fd", str(seccomp_fd)]
    if jail.netns is not None:
        a += ["--netns", str(jail.netns)]
    for f in jail.cgroups:
        a += ["--cgroup", str(f)]
    a += ["--root", str(jail.chdir), *view_args(jail.files, jail.flat), "--proc",
          "--chdir", str(jail.chdir), "--caps", f"{mask_of(jail.caps):x}", "--", *argv]
    return a


def view_args(files: tuple[tuple[Path, Access], ...], flat: tuple[Path, ...] = ()) -> list[str]:
    """rkt-jail's options for the file view: the symlinks met on the way to each file
    (recreated in the jail's root), then one bind per real path, parents first, none
    for a path a bind above it already grants, but for a flat one (a path of files,
    shown without the host's mounts below it: `--ro-flat`, `--rw-flat`). (Plain
    strings: this runs on every pod start, for some hundred paths.)"""
    links: dict[str, str] = {}
    want: dict[str, Access] = {}
    for path, access in files:
        real = _resolve(str(path), links)
        prev = want.setdefault(real, access)
        if prev == access or access in _COVERS[prev]:
            continue
        if prev not in _COVERS[access]:
            raise RktError(f"the VM jail asks for {real} both {prev} and {access}")
        want[real] = access
    if "/" in want:
        raise RktError("the VM jail cannot show the host's root folder /",
                       "share a folder below / instead")
    flat_real = {_resolve(str(p), links) for p in flat}
    binds: dict[str, Access] = {}
    for real in sorted(want, key=_parts):
        above = _closest(real, binds)
        if above is None or want[real] not in _COVERS[binds[above]] or real in flat_real:
            binds[real] = want[real]
    out: list[str] = []
    for link in sorted(links, key=_parts):
        if _closest(link, binds) is None:  # else the bind shows the host's own link
            out += ["--symlink", link, links[link]]
    for real, access in binds.items():
        flat_bind = real in flat_real and access in (Access.RO, Access.RW)
        out += [f"--{access}-flat" if flat_bind else f"--{access}", real]
    return out


def _parts(path: str) -> list[str]:
    return path.split("/")  # sorts a folder before what it holds


def _closest(path: str, binds: dict[str, Access]) -> str | None:
    """The nearest bind strictly above path."""
    while (cut := path.rfind("/")) > 0:
        path = path[:cut]
        if path in binds:
            return path
    return None


MAX_LINKS = 40  # as the kernel's own limit


def _resolve(path: str, links: dict[str, str]) -> str:
    """The real path of `path` (absolute); each symlink met on the way goes into links."""
    if not path.startswith("/"):
        raise RktError(f"the VM jail needs absolute paths, not {path}")
    todo = [p for p in path.split("/") if p and p != "."]
    todo.reverse()  # a stack: the next component last
    cur, hops = "", 0
    while todo:
        name = todo.pop()
        if name == "..":
            cur = cur[: cur.rfind("/")]
            continue
        nxt = f"{cur}/{name}"
        try:
            st = os.lstat(nxt)
        except OSError as e:
            raise RktError(f"the VM jail cannot show {path}: {nxt}: {e.strerror}") from e
        if not stat.S_ISLNK(st.st_mode):
            cur = nxt
            continue
        hops += 1
        if hops > MAX_LINKS:
            raise RktError(f"the VM jail cannot show {path}: too many symbolic links")
        target = os.readlink(nxt)
        links[nxt] = target
        if target.startswith("/"):
            cur = ""
        todo += reversed([p for p in target.split("/") if p and p != "."])
    return cur or "/"
