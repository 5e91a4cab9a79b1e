"""The two file-system primitives the pod folders and the image store share.

`fsync_dir(path)` commits a rename (or a new entry) in a folder; `try_flock(fd)` takes an
exclusive flock without waiting and says whether it got it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """fsync a folder, so that the entries renamed or created in it are on disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def try_flock(fd: int) -> bool:
    """Take an exclusive flock on fd without waiting; False when another holds one."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
