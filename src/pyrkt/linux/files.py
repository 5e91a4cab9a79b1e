"""File-system primitives the pod folders, the image store and the CLI share.

`fsync_dir(path)` commits a rename (or a new entry) in a folder; `try_flock(fd)` takes an
exclusive flock without waiting and says whether it got it; `read_regular(path, limit)`
reads a file a user named, refusing anything but a regular file of at most `limit` bytes
(`/dev/zero`, a FIFO or a huge file never reach memory); `identity(st)` and
`settled(st)` tell when a file's stat may stand for its content (caches of digests).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from pathlib import Path

# A file changed within this many nanoseconds of a stat may change again within the same
# tick of the file system's clock without its ctime changing (ctime is coarse: jiffies,
# or seconds on some file systems): its identity does not yet stand for its content.
SETTLE_NS = 2_000_000_000


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


def read_regular(path: Path | str, limit: int) -> bytes:
    """The content of the regular file at `path`, at most `limit` bytes.

    Raises OSError: the open's own, EINVAL for anything but a regular file (opened
    without blocking, so a FIFO with no writer does not hang), EFBIG past `limit`.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL,
                          "not a regular file", str(path))  # fmt: skip
        chunks: list[bytes] = []
        got = 0
        while got <= limit:
            buf = os.read(fd, min(limit + 1 - got, 1 << 20))
            if not buf:
                break
            chunks.append(buf)
            got += len(buf)
        if got > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def identity(st: os.stat_result) -> list[int]:
    """What tells a file is the very one seen before, unchanged: its device, inode,
    size, mtime and ctime (a write, a truncation, a chmod or a rename over it changes
    one of them; ctime cannot be set by anyone but the clock)."""
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def settled(st: os.stat_result) -> bool:
    """Whether the file's last change is SETTLE_NS old: only then may a cache record
    its identity as standing for what was read (a write in the same clock tick as the
    stat would leave the identity as it was)."""
    return time.time_ns() - st.st_ctime_ns > SETTLE_NS
