"""stage0's one way to turn an image reference into an image ID: IMAGES' `fetch_image`."""

from __future__ import annotations

from pathlib import Path

from pyrkt.options import GlobalOptions, Insecure

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_ID_PREFIX = "sha512-"  # pyrkt.image.store.ID_PREFIX


def fetch(
    g: GlobalOptions, store: Any, ref: str, pull_policy: str = "new", signature: str = ""
) -> str:
    if ref.startswith(_ID_PREFIX) and not signature:
        # An image ID names an image in the store whatever the pull policy: resolve it
        # with the caller's open store instead of importing the fetch machinery.
        return str(store.resolve(ref).id)
    if g.allows(Insecure.IMAGE):
        image_id = _known_file(g, store, ref)
        if image_id is not None:
            return image_id
    from pyrkt.image.fetch import fetch_image

    sig = Path(signature) if signature else None
    return str(fetch_image(g, ref, pull_policy=pull_policy, signature=sig))


def _known_file(g: GlobalOptions, store: Any, ref: str) -> str | None:
    """An ACI file imported before and unchanged since (`image.localaci`), with nothing
    to verify: its ID, said as a fetch of it says it, without reading it again."""
    from pyrkt.image import localaci

    if ref.startswith(("docker://", "oci:")) or localaci.is_url(ref) \
            or not localaci.is_file_ref(ref):  # fmt: skip
        return None
    image_id = localaci.known(store, g.dir / "cache", localaci.local_path(ref))
    if image_id is not None:
        from pyrkt import log
        from pyrkt.image.store import short_id

        log.debug(f"using image from file {ref}", localaci.IMAGE)
        log.warn("image signature verification has been disabled", localaci.IMAGE)
        log.debug(f"image {short_id(image_id)} already in the store")
    return image_id
