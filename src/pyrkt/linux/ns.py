"""unshare(2), setns(2), sethostname(2): namespaces of a pod.

Each wrapper raises OSError naming the syscall.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import os
from collections.abc import Iterator

from pyrkt.linux.libc import check, libc


class CLONE(enum.IntFlag):
    NEWNS = 0x00020000
    NEWCGROUP = 0x02000000
    NEWUTS = 0x04000000
    NEWIPC = 0x08000000
    NEWUSER = 0x10000000
    NEWPID = 0x20000000
    NEWNET = 0x40000000


# /proc/PID/ns/<name> for each kind, in the order `enter` joins them (mnt last: after it,
# paths are the pod's).
NS_FILES: tuple[tuple[str, CLONE], ...] = (
    ("ipc", CLONE.NEWIPC),
    ("uts", CLONE.NEWUTS),
    ("net", CLONE.NEWNET),
    ("pid", CLONE.NEWPID),
    ("cgroup", CLONE.NEWCGROUP),
    ("mnt", CLONE.NEWNS),
)


def unshare(flags: int) -> None:
    check(libc().unshare(ctypes.c_int(int(flags))), "unshare", hex(int(flags)))


def setns(fd: int, nstype: int = 0) -> None:
    check(libc().setns(ctypes.c_int(fd), ctypes.c_int(int(nstype))), "setns", str(fd))


def setns_path(path: str, nstype: int = 0) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, nstype)
    finally:
        os.close(fd)


def sethostname(name: str) -> None:
    raw = name.encode()
    check(libc().sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname", name)


@contextlib.contextmanager
def children_in_new_pid_namespace() -> Iterator[None]:
    """The first process this one starts in the body is the init of a new PID namespace
    (its pid there is 1; here it keeps an ordinary pid, which is what the caller sees);
    children started after the body are born in this process's own namespace again
    (a namespace whose init died refuses new processes: fork gets ENOMEM)."""
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        unshare(CLONE.NEWPID)
        try:
            yield
        finally:
            setns(own, CLONE.NEWPID)
    finally:
        os.close(own)
