"""mount(2), umount2(2) and unshare(2) for stage0's private mount namespace.

stage0 unshares a mount namespace just before it mounts the pod's rootfs and execs the
stage1, so every mount it makes vanishes with the pod, even when rkt is SIGKILLed.
Each wrapper raises OSError naming the syscall.
"""

from __future__ import annotations

import ctypes
import os

from pyrkt.linux.libc import libc

CLONE_NEWNS = 0x00020000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19

MNT_DETACH = 2


def _lib() -> ctypes.CDLL:
    # by soname: ctypes.util.find_library would spawn `ldconfig -p` on every `rkt run`
    return libc()


def _check(ret: int, name: str, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}({what}): {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_lib().unshare(ctypes.c_int(flags)), "unshare", hex(flags))


def mount(
    source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    ret = _lib().mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data is not None else None,
    )
    _check(ret, "mount", f"{source} -> {target}")


def umount(target: str, flags: int = 0) -> None:
    _check(_lib().umount2(target.encode(), ctypes.c_int(flags)), "umount2", target)


def private_mount_namespace() -> None:
    """Enter a new mount namespace whose mounts do not propagate back to the host."""
    unshare(CLONE_NEWNS)
    mount("none", "/", None, MS_REC | MS_SLAVE)


def overlay(lower: str, upper: str, work: str, target: str) -> None:
    mount("overlay", target, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")


def bind(source: str, target: str, *, read_only: bool = False, recursive: bool = True) -> None:
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    if read_only:
        mount("none", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
