"""Network-namespace syscalls: setns(2) on a namespace file, through ctypes.

Each wrapper raises OSError naming the syscall. Used by `pyrkt.net.netns` to run code
or a child process (QEMU, a test server) inside a pod's network namespace.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from pyrkt.linux.libc import libc

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """Move the calling thread into the namespace open at `fd`."""
    if libc().setns(ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def setns_path(path: Path | str, nstype: int = CLONE_NEWNET) -> None:
    """Move the calling thread into the namespace bind-mounted (or linked) at `path`."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, nstype)
    finally:
        os.close(fd)
