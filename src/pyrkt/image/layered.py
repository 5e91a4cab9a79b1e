"""Importing a layered (docker / OCI) image: apply its layers in order into staging, then
commit the tree to the store, once, however many processes fetch it at the same time.

The image ID is known before any layer is read (see `store.tree_image_id`), so a fetch
of an image already in the store downloads nothing, and concurrent fetches of the same
image serialize on a per-image flock: the first applies the layers, the others find
the image there when they get the lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from pyrkt import log
from pyrkt.appc.image import ImageManifest
from pyrkt.errors import RktError
from pyrkt.image.layers import ByteStream, apply_layer
from pyrkt.image.limits import Budget
from pyrkt.image.store import Store, short_id, tree_image_id

LayerSource = Callable[[], Iterable[ByteStream]]


class DigestMismatch(RktError):
    """Content whose digest is not the one it was named by."""


class VerifyingReader:
    """Reads a stream while hashing it; `finish()` drains it and checks the digest."""

    def __init__(self, raw: ByteStream, digest: str, what: str) -> None:
        algo, _, self.expected = digest.partition(":")
        if algo not in ("sha256", "sha512"):
            raise DigestMismatch(f"{what}: unsupported digest algorithm {algo!r}")
        self.h = hashlib.new(algo)
        self.raw = raw
        self.digest = digest
        self.what = what
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.h.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def finish(self) -> None:
        while self.read(1 << 20):
            pass
        if self.h.hexdigest() != self.expected:
            raise DigestMismatch(
                f"{self.what}: digest mismatch: expected {self.digest}, "
                f"got {self.h.name}:{self.h.hexdigest()}"
            )

    def close(self) -> None:
        close = getattr(self.raw, "close", None)
        if close is not None:
            close()


def import_layered(
    store: Store,
    manifest: ImageManifest,
    layer_digests: list[str],
    layers: LayerSource,
    *,
    on_layer: Callable[[int, int], Any] | None = None,
    what: str = "",
) -> str:
    """Apply `layers()` (streams, in order) into a new tree; returns the image ID.

    Each stream is closed after use; a `VerifyingReader` is drained and checked, so a
    corrupt or truncated layer aborts the import and leaves the store as it was. The
    layers are metered (`limits.Budget`; `what` names the image in its errors).
    """
    image_id = tree_image_id(manifest, layer_digests)
    if store.get(image_id) is not None:
        return image_id
    with store.lock(image_id):
        if store.get(image_id) is not None:
            log.debug(f"image {short_id(image_id)} was fetched meanwhile")
            return image_id
        with store.staging("layers") as stage:
            rootfs = stage / "rootfs"
            rootfs.mkdir(mode=0o755)
            total = 0
            budget = Budget(store.root, what or manifest.name)
            for i, stream in enumerate(layers()):
                try:
                    total += apply_layer(stream, rootfs, budget=budget,
                                         layer=layer_digests[i] if i < len(layer_digests)
                                         else str(i))  # fmt: skip
                    if isinstance(stream, VerifyingReader):
                        stream.finish()
                finally:
                    close = getattr(stream, "close", None)
                    if close is not None:
                        close()
                if on_layer is not None:
                    on_layer(i + 1, len(layer_digests))
            store.commit_tree(image_id, stage, manifest, total)
    return image_id
