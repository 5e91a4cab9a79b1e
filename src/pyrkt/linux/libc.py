"""The one ctypes handle on libc, and the error convention every wrapper follows.

Loaded by its soname (no `ctypes.util.find_library`, which spawns `ldconfig`), lazily,
so that importing a wrapper module costs nothing until a syscall is made.
"""

from __future__ import annotations

import ctypes
import os

_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL("libc.so.6", use_errno=True)
    return _libc


def check(ret: int, name: str, what: str = "") -> int:
    """Raise OSError naming the syscall (and its main argument) when ret < 0."""
    if ret < 0:
        err = ctypes.get_errno()
        detail = f"({what})" if what else ""
        raise OSError(err, f"{name}{detail}: {os.strerror(err)}")
    return ret
