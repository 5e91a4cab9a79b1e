"""Bringing a network interface up with SIOCSIFFLAGS (no `ip`, no netlink library).

Used for `lo` in a pod's fresh network namespace. Raises OSError naming the ioctl. The
socket comes from libc rather than the `socket` module, whose import (with `selectors`
and `array`) costs milliseconds on every `rkt run`.
"""

from __future__ import annotations

import fcntl
import os
import struct

from pyrkt.linux.libc import check, libc

AF_INET = 2
SOCK_DGRAM = 2
SOCK_CLOEXEC = 0o2000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def set_up(name: str = "lo") -> None:
    fd = check(libc().socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket")
    try:
        req = struct.pack("16sH14x", name.encode(), 0)
        try:
            res = fcntl.ioctl(fd, SIOCGIFFLAGS, req)
            flags = struct.unpack("16sH14x", res)[1] | IFF_UP
            fcntl.ioctl(fd, SIOCSIFFLAGS, struct.pack("16sH14x", name.encode(), flags))
        except OSError as e:
            raise OSError(e.errno, f"ioctl(SIOCSIFFLAGS, {name}): {e.strerror}") from e
    finally:
        os.close(fd)
