"""Blob downloads: streamed to files, size and digest verified on the way, layers fetched
in parallel and handed out in manifest order as each one completes.

`LayerDownloads` starts every download at once (a small thread pool) on `start()` or
the first `next()`; iterating it yields `LayerBlob`s in order, waiting only for the next
one, so a caller can extract layer 0 while the others still download. `close()` (also
on an early exit from the loop or an error) stops the remaining downloads. A blob's
file appears under its final name only once its digest has been checked; nothing
unverified is ever handed out.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pyrkt import log
from pyrkt.errors import RktError
from pyrkt.image.docker.manifest import Descriptor
from pyrkt.image.docker.transport import RegistrySession

CHUNK = 1 << 20
ProgressFn = Callable[[str, int, int], None]
"""progress(digest, bytes_done, bytes_total); called from download threads."""


class BlobError(RktError):
    """A blob that failed to download or to verify."""


class Cancelled(BlobError):
    def __init__(self, digest: str) -> None:
        super().__init__(f"download of blob {digest} cancelled")


@dataclass(frozen=True)
class LayerBlob:
    path: Path  # the blob as downloaded (compressed as media_type says), verified
    digest: str
    media_type: str
    size: int


def _hasher(digest: str) -> hashlib._Hash:
    algo = digest.split(":", 1)[0]
    if algo not in ("sha256", "sha512"):
        raise BlobError(f"blob {digest}: unsupported digest algorithm {algo!r}")
    return hashlib.new(algo)


def blob_filename(digest: str) -> str:
    return digest.replace(":", "-")


def download_blob(sess: RegistrySession, desc: Descriptor, dest_dir: Path, *,
                  progress: ProgressFn | None = None,
                  cancel: threading.Event | None = None) -> Path:
    """Download one blob to dest_dir/<algo>-<hex>, verified against desc."""
    from pyrkt.image.httpget import TransportError

    final = dest_dir / blob_filename(desc.digest)
    if final.exists():
        return final
    part = final.with_name(final.name + ".part")
    hasher = _hasher(desc.digest)
    done = 0
    resp = sess.get(f"blobs/{desc.digest}", what=f"blob {desc.digest}")
    try:
        with open(part, "wb") as out:
            if progress:
                progress(desc.digest, 0, desc.size)
            for chunk in resp.iter_content(CHUNK):
                if cancel is not None and cancel.is_set():
                    raise Cancelled(desc.digest)
                done += len(chunk)
                if done > desc.size:
                    raise BlobError(f"blob {desc.digest}: registry sent more than the "
                                    f"{desc.size} bytes the manifest names")
                hasher.update(chunk)
                out.write(chunk)
                if progress:
                    progress(desc.digest, done, desc.size)
    except TransportError as e:
        part.unlink(missing_ok=True)
        raise BlobError(f"blob {desc.digest}: download truncated after {done} of "
                        f"{desc.size} bytes: {e}") from e
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        resp.close()
    got = f"{desc.digest.split(':', 1)[0]}:{hasher.hexdigest()}"
    if done != desc.size:
        part.unlink(missing_ok=True)
        raise BlobError(f"blob {desc.digest}: download truncated after {done} of "
                        f"{desc.size} bytes")
    if got != desc.digest:
        part.unlink(missing_ok=True)
        raise BlobError(f"blob {desc.digest}: digest mismatch (downloaded data hashes to "
                        f"{got})", "the registry's copy is corrupt")
    part.rename(final)
    log.debug(f"blob {desc.digest}: {done} bytes verified")
    return final


class LayerDownloads:
    """An iterator of verified LayerBlobs, in manifest order, downloaded in parallel."""

    def __init__(self, sess: RegistrySession, layers: Sequence[Descriptor], dest_dir: Path,
                 *, progress: ProgressFn | None = None, workers: int = 3) -> None:
        self.descriptors = tuple(layers)
        self._sess, self._dest, self._progress = sess, dest_dir, progress
        self._cancel = threading.Event()
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="pyrkt-blob")
        self._futures: dict[str, Future[Path]] = {}
        self._iter = self._generate()

    def start(self) -> None:
        """Start every download (done by the first next() if not called before)."""
        if self._futures or self._cancel.is_set():
            return
        for d in self.descriptors:
            if d.digest not in self._futures:  # the same layer twice: fetch it once
                self._futures[d.digest] = self._pool.submit(
                    download_blob, self._sess, d, self._dest, progress=self._progress,
                    cancel=self._cancel)

    def _generate(self) -> Iterator[LayerBlob]:
        self.start()
        try:
            for d in self.descriptors:
                path = self._futures[d.digest].result()
                yield LayerBlob(path=path, digest=d.digest, media_type=d.media_type,
                                size=d.size)
        finally:
            self.close()

    def __iter__(self) -> Iterator[LayerBlob]:
        return self

    def __next__(self) -> LayerBlob:
        return next(self._iter)

    def close(self) -> None:
        """Stop what is still downloading and wait for the threads to end."""
        self._cancel.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
