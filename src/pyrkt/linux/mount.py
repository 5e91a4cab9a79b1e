"""mount(2), umount2(2), pivot_root(2) with their flags.

Each wrapper raises OSError naming the syscall and the target.
"""

from __future__ import annotations

import ctypes
import enum

from pyrkt.linux.libc import check, libc


class MS(enum.IntFlag):
    RDONLY = 1
    NOSUID = 2
    NODEV = 4
    NOEXEC = 8
    REMOUNT = 32
    NOATIME = 1024
    BIND = 4096
    MOVE = 8192
    REC = 16384
    PRIVATE = 1 << 18
    SLAVE = 1 << 19
    SHARED = 1 << 20
    STRICTATIME = 1 << 24


MNT_FORCE = 1
MNT_DETACH = 2


def mount(
    source: str, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None
) -> None:
    ret = libc().mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(int(flags)),
        data.encode() if data is not None else None,
    )
    check(ret, "mount", f"{fstype or source} on {target}")


def umount(target: str, flags: int = 0) -> None:
    check(libc().umount2(target.encode(), ctypes.c_int(flags)), "umount2", target)


def bind(source: str, target: str, *, recursive: bool = True, read_only: bool = False,
         extra: int = 0) -> None:
    """Bind source on target; read-only through a second (remount) call, as the kernel needs."""
    mount(source, target, None, MS.BIND | (MS.REC if recursive else 0))
    if read_only or extra:
        remount_bind(target, read_only=read_only, extra=extra)


def remount_bind(target: str, *, read_only: bool = True, extra: int = 0) -> None:
    flags = MS.BIND | MS.REMOUNT | (MS.RDONLY if read_only else 0) | extra
    mount("none", target, None, flags)


def make_private(target: str = "/", *, slave: bool = False) -> None:
    """Stop mount events under target from propagating (rprivate, or rslave)."""
    mount("none", target, None, MS.REC | (MS.SLAVE if slave else MS.PRIVATE))


def pivot_root(new_root: str, put_old: str) -> None:
    # glibc has no wrapper: syscall number 155 on x86_64, 41 on aarch64.
    import platform

    nr = {"x86_64": 155, "aarch64": 41}.get(platform.machine(), 155)
    ret = libc().syscall(ctypes.c_long(nr), new_root.encode(), put_old.encode())
    check(ret, "pivot_root", new_root)


def submounts(path: str) -> list[str]:
    """Mount points at or below path (from /proc/self/mountinfo), outermost first."""
    prefix = path.rstrip("/") + "/"
    out: list[str] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split(" ", 5)[4].replace("\\040", " ")
            if mp == path or mp.startswith(prefix):
                out.append(mp)
    return out
