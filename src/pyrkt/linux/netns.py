"""Network-namespace syscalls: setns(2) on a namespace file, through ctypes.

Each wrapper raises OSError naming the syscall. Used by `pyrkt.net.netns` to run code
or a child process (QEMU, a test server) inside a pod's network namespace. The
wrappers are `ns`'s, with the network namespace as the default kind.
"""

from __future__ import annotations

from pathlib import Path

from pyrkt.linux import ns
from pyrkt.linux.ns import CLONE

CLONE_NEWNET = CLONE.NEWNET
CLONE_NEWNS = CLONE.NEWNS
CLONE_NEWPID = CLONE.NEWPID


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """Move the calling thread into the namespace open at `fd`."""
    ns.setns(fd, nstype)


def setns_path(path: Path | str, nstype: int = CLONE_NEWNET) -> None:
    """Move the calling thread into the namespace bind-mounted (or linked) at `path`."""
    ns.setns_path(str(path), nstype)
