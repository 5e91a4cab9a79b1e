"""Reading what the guest wrote on the control share, without trusting it.

Everything under the pod's 9p shares is written by the guest, which may replace a file
by a symlink (to a host file), a folder, or something huge. These helpers open names
relative to a folder fd taken before the guest knew the folder, never follow a
symlink, accept regular files only and bound what they read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_dir(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def open_file(dir_fd: int, name: str) -> int | None:
    """name in dir_fd, opened for reading if it is a regular file; None otherwise."""
    try:
        fd = os.open(name, _FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def read_small(dir_fd: int, name: str, limit: int = 64) -> bytes | None:
    """At most limit bytes of a regular file name in dir_fd; None if there is none."""
    fd = open_file(dir_fd, name)
    if fd is None:
        return None
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)
