"""stage0's one way to turn an image reference into an image ID.

Uses IMAGES' `pyrkt.image.fetch.fetch_image(g, ref, pull_policy=...)`. Until that module
exists, a minimal fallback handles what stage0's own tests need: an ACI file path
(imported into the store) or a name / ID already in the store.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from pyrkt.options import GlobalOptions


def fetch(g: GlobalOptions, store: Any, ref: str, pull_policy: str = "new") -> str:
    try:
        mod = importlib.import_module("pyrkt.image.fetch")
    except ImportError:
        mod = None
    if mod is not None:
        return str(mod.fetch_image(g, ref, pull_policy=pull_policy))
    path = Path(ref[len("file://") :] if ref.startswith("file://") else ref)
    if ref.endswith(".aci") and path.is_file():
        return str(store.import_aci(path))
    return str(store.resolve(ref).id)
