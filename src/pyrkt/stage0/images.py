"""stage0's one way to turn an image reference into an image ID: IMAGES' `fetch_image`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyrkt.options import GlobalOptions


def fetch(
    g: GlobalOptions, store: Any, ref: str, pull_policy: str = "new", signature: str = ""
) -> str:
    from pyrkt.image.fetch import fetch_image

    sig = Path(signature) if signature else None
    return str(fetch_image(g, ref, pull_policy=pull_policy, signature=sig))
