"""rkt's configuration directories: `<dir>/<kind>.d/*.json`, each file naming its rktKind.

Directories come lowest precedence first (system, local, user); files within one are read
in name order. Each consumer applies its own override rule to the entries.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pyrkt.errors import RktError


def config_files(dirs: Iterable[Path], sub: str) -> Iterator[Path]:
    for d in dirs:
        folder = d / sub
        if folder.is_dir():
            yield from sorted(folder.glob("*.json"))


def config_entries(dirs: Iterable[Path], sub: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(file, JSON object) for each config file; a broken one is an error naming it."""
    for f in config_files(dirs, sub):
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise RktError(f"invalid configuration file {f}: {e}") from e
        if not isinstance(data, dict) or not data.get("rktKind"):
            raise RktError(f"invalid configuration file {f}: no rktKind")
        yield f, data
