"""stage0's one way to turn an image reference into an image ID: IMAGES' `fetch_image`."""

from __future__ import annotations

from pathlib import Path

from pyrkt.options import GlobalOptions

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
    from pyrkt.image.fetch import fetch_image

    sig = Path(signature) if signature else None
    return str(fetch_image(g, ref, pull_policy=pull_policy, signature=sig))
