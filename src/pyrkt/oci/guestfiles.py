"""Files on the control share, without trusting the guest.

Everything under the pod's 9p shares is written by the guest, which may replace a file
or a folder by a symlink (to a host path), a folder, or something huge. These helpers
make and open names relative to folder fds (the share's root first: the guest cannot
replace that), never follow a symlink, create files exclusively, accept regular files
only and bound what they read.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir(path: Path) -> int:
    return os.open(path, _DIR)


def make_dirs(root: Path, *names: str) -> int:
    """root/names[0]/names[1]/..., each made if missing and opened without following a
    symlink; the fd of the last (OSError if the guest put something else there)."""
    fd = os.open(root, _DIR)
    try:
        for name in names:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=fd)
            nxt = os.open(name, _DIR, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_new(dir_fd: int, name: str, data: bytes) -> None:
    """A new file name in dir_fd holding data (never an existing one, nor a link)."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


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
