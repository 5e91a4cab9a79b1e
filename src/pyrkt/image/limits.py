"""What a fetch may write: caps on an image's uncompressed size, and the free space the
image store keeps.

    PYRKT_MAX_LAYER_SIZE   uncompressed bytes of one layer (its tar stream); default 8Gi
    PYRKT_MAX_IMAGE_SIZE   uncompressed bytes of an image (all its layers, or an ACI's
                           tar); default 16Gi

Values are quantities as for memory limits (`512Mi`, `8Gi`, `2G`, plain bytes); `0`
turns a cap off. An ACI is one layer: both caps apply to its tar.

`Budget(store_root, what)` meters one image while it is read: `budget.meter(chunks,
layer)` passes the decompressed chunks through, counting them, and raises `TooLarge`
before handing on the chunk that would cross a cap (so a gzip bomb stops after at most
the cap, never writing past it), and `NoSpace` when the store's file system falls below
its reserve (checked every `CHECK_EVERY` bytes). `require_space(root, need, what)` is the
check before a download whose size is known. `out_of_space_error` turns a "no space
left on device" from anywhere below a fetch (file writes, download threads, sqlite)
into the same one-line `NoSpace` (`Store.space_errors`).

The reserve: fetches stop when less than `min(RESERVE_MAX, RESERVE_FRACTION of the file
system)` would be left, so a fetch never fills the disk that pods and logs share.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

from pyrkt.errors import RktError
from pyrkt.record import record

ENV_MAX_LAYER = "PYRKT_MAX_LAYER_SIZE"
ENV_MAX_IMAGE = "PYRKT_MAX_IMAGE_SIZE"
DEFAULT_MAX_LAYER = 8 << 30
DEFAULT_MAX_IMAGE = 16 << 30
RESERVE_MAX = 256 << 20
RESERVE_FRACTION = 0.02
CHECK_EVERY = 32 << 20  # bytes extracted between two free-space checks
_HINT_SPACE = "free some space, or 'rkt image gc' / 'rkt image rm' unused images"


class TooLarge(RktError):
    """An image or layer over its cap."""


class NoSpace(RktError):
    """The image store's file system has not enough room."""


@record
class Limits:
    max_layer: int = DEFAULT_MAX_LAYER  # 0: no cap
    max_image: int = DEFAULT_MAX_IMAGE

    def too_large(self, what: str, layer: str | None) -> TooLarge:
        """The error for `what` (layer `layer`, or the image if None) over its cap."""
        if layer is None:
            cap, env, subject, of = self.max_image, ENV_MAX_IMAGE, "it is", "an image"
        else:
            cap, env, of = self.max_layer, ENV_MAX_LAYER, "a layer"
            subject = f"layer {layer} is" if layer else "a layer is"
        return TooLarge(f"{what}: {subject} larger than {mib(cap)} uncompressed, the cap "
                        f"on {of}'s size", f"set {env} to raise it")  # fmt: skip

    def check_compressed(self, what: str, sizes: list[int]) -> None:
        """Refuse, before downloading, blobs whose compressed size alone is over a cap
        (compressed streams of incompressible data are a fraction of a percent larger
        than the data, hence the slack)."""

        def over(n: int, cap: int) -> bool:
            return bool(cap) and n > cap + cap // 100 + (1 << 20)

        if any(over(n, self.max_layer) for n in sizes):
            raise self.too_large(what, "")
        if over(sum(sizes), self.max_image):
            raise self.too_large(what, None)


def _env_size(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    from pyrkt.appc.pod import parse_quantity

    try:
        return parse_quantity(raw)
    except RktError:
        raise RktError(f"invalid {name}={raw!r}", "a size such as 512Mi or 8Gi; 0 for "
                       "no cap") from None  # fmt: skip


def limits() -> Limits:
    """The caps in force (the environment's, else the defaults)."""
    return Limits(_env_size(ENV_MAX_LAYER, DEFAULT_MAX_LAYER),
                  _env_size(ENV_MAX_IMAGE, DEFAULT_MAX_IMAGE))  # fmt: skip


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def free_space(path: Path) -> tuple[int, int]:
    """(bytes free for us, bytes to keep free) on the file system holding path."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    return st.f_bavail * st.f_frsize, min(RESERVE_MAX, int(total * RESERVE_FRACTION))


def require_space(root: Path, need: int, what: str) -> None:
    """NoSpace unless `need` more bytes fit in the store at root (above its reserve)."""
    free, keep = free_space(root)
    if free - need < keep:
        raise NoSpace(f"not enough free space in the image store {root} for {what}: "
                      f"it needs at least {mib(need)}, {mib(free)} is free "
                      f"({mib(keep)} is kept free)", _HINT_SPACE)  # fmt: skip


class Budget:
    """Meters the uncompressed bytes of one image (see the module docstring)."""

    def __init__(self, root: Path, what: str, caps: Limits | None = None) -> None:
        self.root = root
        self.what = what
        self.caps = caps if caps is not None else limits()
        self.total = 0
        self._next_check = 0

    def meter(self, chunks: Iterator[bytes], layer: str = "") -> Iterator[bytes]:
        layer_bytes = 0
        max_layer, max_image = self.caps.max_layer, self.caps.max_image
        for chunk in chunks:
            layer_bytes += len(chunk)
            self.total += len(chunk)
            if max_layer and layer_bytes > max_layer:
                raise self.caps.too_large(self.what, layer)
            if max_image and self.total > max_image:
                raise self.caps.too_large(self.what, None)
            if self.total >= self._next_check:
                self._next_check = self.total + CHECK_EVERY
                self.check_space()
            yield chunk

    def check_space(self) -> None:
        free, keep = free_space(self.root)
        if free < keep:
            raise NoSpace(f"not enough free space in the image store {self.root} for "
                          f"{self.what}: {mib(free)} left after extracting "
                          f"{mib(self.total)} ({mib(keep)} is kept free)",
                          _HINT_SPACE)  # fmt: skip


_FULL = (errno.ENOSPC, errno.EDQUOT)


def _out_of_space(e: BaseException | None) -> bool:
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, OSError) and e.errno in _FULL:
            return True
        if type(e).__name__ == "OperationalError" and "full" in str(e):  # sqlite3
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def out_of_space_error(e: BaseException, root: Path, what: str) -> NoSpace | None:
    """For a "no space left on device" (however wrapped), the one-line NoSpace to
    raise instead (`Store.space_errors`); None for anything else, NoSpace included."""
    if isinstance(e, NoSpace) or not _out_of_space(e):
        return None
    free = free_space(root)[0] if root.exists() else 0
    return NoSpace(f"the image store {root} ran out of space while fetching {what} "
                   f"({mib(free)} free)", _HINT_SPACE)  # fmt: skip
