"""Byte streams for layers and archives: compression detected by magic bytes (gzip,
zstd or none), gzip inflated in large chunks (by ISA-L when installed, about 3x zlib), and
decompression run a few chunks ahead in a helper thread so it overlaps with the consumer.

Two shapes of the same data: `decompressed_chunks(stream)` gives the plain bytes as an
iterator of chunks (no copy: what the decompressor returned; `tarstream` writes files
straight from them), `decompressed(stream)` as a file object with `read`.
"""

from __future__ import annotations

import io
import queue
import threading
import types
import zlib
from collections.abc import Iterator
from typing import IO, Any, Protocol, cast

_CHUNK = 1 << 20
_OUT_MAX = 1 << 20  # the most one inflate call returns (text layers inflate 100x)


class ByteStream(Protocol):
    """Anything with a binary `read` (files, HTTP response bodies, decompressors)."""

    def read(self, size: int = -1, /) -> bytes: ...


class Chunks(Protocol):
    """An iterator of byte chunks that must be closed (it may own a thread)."""

    def __iter__(self) -> Iterator[bytes]: ...

    def __next__(self) -> bytes: ...

    def close(self) -> None: ...


_zlib: types.ModuleType = zlib
try:  # ISA-L's inflate is about 3x zlib's, with the same API
    from isal import isal_zlib

    _zlib = isal_zlib
except ImportError:  # pragma: no cover
    pass


def _raw_chunks(head: bytes, raw: ByteStream) -> Iterator[bytes]:
    if head:
        yield head
    while chunk := raw.read(_CHUNK):
        yield chunk


def _gunzip_chunks(raw: Iterator[bytes]) -> Iterator[bytes]:
    """gzip inflated in large chunks; concatenated members are followed, as gzip(1)
    does, and NUL padding after the last one is ignored."""
    d = _zlib.decompressobj(wbits=31)
    ended = False  # the member ended: only padding or another member may follow
    for data in raw:
        while data:
            if ended:
                if not data.strip(b"\0"):
                    break
                d = _zlib.decompressobj(wbits=31)
                ended = False
            out = d.decompress(data, _OUT_MAX)
            if out:
                yield out
            if d.eof:
                ended = True
                data = d.unused_data
            else:
                data = d.unconsumed_tail
    if not ended:
        raise EOFError("compressed layer ended before the end of the stream")


def _zstd_chunks(raw: Iterator[bytes]) -> Iterator[bytes]:
    import zstandard

    src = cast("IO[bytes]", _ChunkReader(raw))
    reader = zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True)
    while chunk := reader.read(_CHUNK):
        yield chunk


class _Ahead:
    """Runs a chunk generator in a helper thread, a few chunks ahead of the consumer:
    decompression (which releases the GIL) then overlaps with tar parsing and file
    writes. An error in the generator is raised in the consumer."""

    def __init__(self, gen: Iterator[bytes], depth: int = 8) -> None:
        self._q: queue.Queue[bytes | BaseException | None] = queue.Queue(depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(gen,), daemon=True,
                                        name="pyrkt-layer-read")  # fmt: skip
        self._thread.start()

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, gen: Iterator[bytes]) -> None:
        try:
            for chunk in gen:
                if not self._put(chunk):
                    return
            self._put(None)
        except BaseException as e:  # handed to the consuming thread
            self._put(e)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        item = self._q.get()
        if item is None:
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _Inline:
    """A chunk generator run in the consumer's thread (plain tars: nothing to overlap)."""

    def __init__(self, gen: Iterator[bytes]) -> None:
        self._gen = gen

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._gen)

    def close(self) -> None:
        pass


def decompressed_chunks(stream: ByteStream) -> Chunks:
    """The plain tar in `stream` (gzip, zstd or plain, by its magic bytes) as chunks;
    close() the result (it stops the helper thread)."""
    head = b""
    while len(head) < 6:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        head += chunk
    raw = _raw_chunks(head, stream)
    if head.startswith(b"\x1f\x8b"):
        return _Ahead(_gunzip_chunks(raw))
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return _Ahead(_zstd_chunks(raw))
    return _Inline(raw)


class _ChunkReader(io.RawIOBase):
    """Chunks read as a raw binary stream."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        while not self._buf:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buf = memoryview(chunk)
        n = min(len(view), len(self._buf))
        view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None and not self.closed:
            close()
        super().close()


def decompressed(stream: ByteStream) -> IO[bytes]:
    """Wrap a layer stream so that it reads as a plain tar, by its magic bytes."""
    return io.BufferedReader(_ChunkReader(decompressed_chunks(stream)), _CHUNK)
