"""Resolving a path inside a root as the app will see it (symlinks and `..` stay inside)."""

from __future__ import annotations

import os
from pathlib import Path

_MAX_LINKS = 40


def secure_join(root: Path, path: str) -> Path:
    """root + path with every symlink resolved relative to root, never escaping it."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            links += 1
            if links > _MAX_LINKS:
                raise OSError(40, f"too many levels of symbolic links in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)
