"""Bringing a network interface up with SIOCSIFFLAGS (no `ip`, no netlink library).

Used for `lo` in a pod's fresh network namespace. Raises OSError naming the ioctl.
"""

from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def set_up(name: str = "lo") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", name.encode(), 0)
        try:
            res = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req)
            flags = struct.unpack("16sH14x", res)[1] | IFF_UP
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", name.encode(), flags))
        except OSError as e:
            raise OSError(e.errno, f"ioctl(SIOCSIFFLAGS, {name}): {e.strerror}") from e
