"""Why an app's executable could not be executed, in one line, as rkt's stage1
`diagnostic` said it: the first file on the way that cannot be opened (the program, its
`#!` interpreter, its ELF interpreter), or what is wrong with it.

    Error: Unable to open "/lib64/ld-linux-x86-64.so.2": No such file or directory

Runs in the app's child after its exec failed, inside the app's rootfs; reads at most
the headers it needs.
"""

from __future__ import annotations

import os
import stat
import struct

MAX_DEPTH = 10  # interpreters of interpreters (rkt: MAX_DIAG_DEPTH)
_HEAD = 4096  # bytes read: the ELF header or the #! line
_PT_INTERP = 3


def _interpreter(path: str) -> str:
    """The interpreter `path` names (#! line or ELF PT_INTERP); raises DiagError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise DiagError(f'Unable to open "{path}": {os.strerror(e.errno or 0)}') from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DiagError(f'"{path}" is not a regular file')
        if not st.st_mode & 0o111:
            raise DiagError(f'"{path}" is not executable')
        head = os.pread(fd, _HEAD, 0)
        if head.startswith(b"#!"):
            line = head[2:].split(b"\n", 1)
            if len(line) < 2:
                raise DiagError("Shebang line too long")
            words = line[0].split()
            itrp = words[0].decode(errors="replace") if words else ""
        elif head.startswith(b"\x7fELF"):
            itrp = _elf_interp(fd, head) or ""
        else:
            raise DiagError("Unsupported file type")
    finally:
        os.close(fd)
    if not itrp:
        raise DiagError(f'Unable to determine interpreter for "{path}"')
    if not itrp.startswith("/"):
        raise DiagError(f'Path must be absolute: "{itrp}"')
    return itrp


def _elf_interp(fd: int, head: bytes) -> str | None:
    if len(head) < 64 or head[6] != 1:
        raise DiagError(f"Unsupported ELF version: {head[6] if len(head) > 6 else 0:x}")
    bits, endian = head[4], head[5]
    if bits not in (1, 2) or endian not in (1, 2):
        raise DiagError("Unsupported ELF format")
    e = "<" if endian == 1 else ">"
    if bits == 2:
        phoff, = struct.unpack_from(e + "Q", head, 0x20)
        phentsize, phnum = struct.unpack_from(e + "HH", head, 0x36)
        entry, off_at, size_at = e + "IIQQQQQQ", 2, 5
    else:
        phoff, = struct.unpack_from(e + "I", head, 0x1C)
        phentsize, phnum = struct.unpack_from(e + "HH", head, 0x2A)
        entry, off_at, size_at = e + "IIIIIIII", 1, 4
    if not phoff or phentsize < struct.calcsize(entry):
        return None
    table = os.pread(fd, min(phnum, 256) * phentsize, phoff)
    for i in range(len(table) // phentsize):
        ph = struct.unpack_from(entry, table, i * phentsize)
        if ph[0] == _PT_INTERP:
            size = min(ph[size_at], 4096)
            return os.pread(fd, size, ph[off_at]).split(b"\0", 1)[0].decode(errors="replace")
    return None


class DiagError(Exception):
    """What is wrong, in rkt's diagnostic's words."""


def diagnose(path: str) -> str:
    """One line saying why `path` could not be executed ("" if nothing was found)."""
    try:
        for _ in range(MAX_DEPTH + 1):
            path = _interpreter(path)
            if not path:
                return ""
        return "Error: Excessive interpreter recursion, giving up"
    except DiagError as e:
        return f"Error: {e}"
