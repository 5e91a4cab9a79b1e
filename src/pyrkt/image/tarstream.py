"""Reading a tar archive from a stream of chunks, in one pass, without copies.

`TarStream(chunks)` iterates over the members (`tarfile.TarInfo`, headers parsed by
tarfile's own `TarInfo.fromtarfile`: ustar, GNU long names, pax, global pax headers);
after each member, `copy_to(fd)` writes the member's data to a file descriptor straight
from the chunks the decompressor produced (tarfile's stream mode copies every byte
three times more), or the data is skipped when the next member is asked for.

A stream that ends inside a member, or a corrupt header after the first, raises
`TarStreamError`; the end of the archive is the first all-zero block (or the end of the
stream on a block boundary), as for tarfile.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator

BLOCK = tarfile.BLOCKSIZE
# the end of the archive (a zero block, or nothing); not in tarfile's typed API
_END: tuple[type[Exception], ...] = (getattr(tarfile, "EOFHeaderError"),  # noqa: B009
                                     getattr(tarfile, "EmptyHeaderError"))  # noqa: B009


class TarStreamError(Exception):
    """A tar stream that is truncated or corrupt."""


class TarStream:
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")
        self._pos = 0  # bytes consumed from the stream so far
        self._data_left = 0  # data (+ padding) of the current member not yet consumed
        self._data_size = 0  # of which data proper
        # what TarInfo.fromtarfile uses of a TarFile
        self.fileobj = self
        self.encoding = tarfile.ENCODING
        self.errors = "surrogateescape"
        self.pax_headers: dict[str, str] = {}
        self.offset = 0

    # -- the stream ------------------------------------------------------------------

    def _fill(self) -> bool:
        while not self._buf:
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            self._buf = memoryview(chunk)
        return True

    def read(self, n: int) -> bytes:
        """n bytes, fewer only at the end of the stream (tarfile's headers use this)."""
        if len(self._buf) >= n:
            out = bytes(self._buf[:n])
            self._buf = self._buf[n:]
            self._pos += n
            return out
        parts: list[bytes] = []
        want = n
        while want and self._fill():
            take = self._buf[:want]
            parts.append(bytes(take))
            self._buf = self._buf[len(take) :]
            want -= len(take)
        got = n - want
        self._pos += got
        return b"".join(parts)

    def tell(self) -> int:
        return self._pos

    def _skip(self, n: int) -> None:
        while n:
            if not self._fill():
                raise TarStreamError(f"tar stream truncated at byte {self._pos}")
            k = min(n, len(self._buf))
            self._buf = self._buf[k:]
            self._pos += k
            n -= k

    # -- members ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[tarfile.TarInfo]:
        while True:
            m = self.next()
            if m is None:
                return
            yield m

    def next(self) -> tarfile.TarInfo | None:
        """The next member's header (what is left of the last member's data skipped)."""
        if self._data_left:
            self._skip(self._data_left)
            self._data_left = 0
        start = self._pos
        try:
            m = tarfile.TarInfo.fromtarfile(self)  # type: ignore[arg-type]
        except _END:
            return None
        except tarfile.HeaderError as e:
            raise TarStreamError(f"bad tar header at byte {start}: {e}") from None
        if m.sparse is not None or m.type == tarfile.GNUTYPE_SPARSE:
            raise TarStreamError(f"{m.name!r}: sparse files are not supported")
        # fromtarfile set self.offset to where the next header begins
        self._data_left = self.offset - self._pos
        self._data_size = m.size if m.isreg() else 0
        return m

    def copy_to(self, fd: int) -> None:
        """Write the current member's data to fd (once, before the next member)."""
        n = self._data_size
        self._data_size = 0
        self._data_left -= n
        while n:
            if not self._fill():
                raise TarStreamError(f"tar stream truncated at byte {self._pos}")
            view = self._buf[:n]
            written = os.write(fd, view)
            self._buf = self._buf[written:]
            self._pos += written
            n -= written

    @property
    def size(self) -> int:
        """Where the archive's members end (once the last member is read: its size
        without the end-of-archive blocks, as tarfile's `offset`)."""
        return self.offset
