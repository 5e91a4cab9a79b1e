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


PATHS_KEYS = ("data", "stage1-images")


def paths_config(system_config: Path, local_config: Path) -> dict[str, str]:
    """rkt's `paths` kind: the keys of PATHS_KEYS set in `paths.d` of the system then the
    local config dir (per key, local wins). rkt read no `paths.d` in the user dir."""
    out: dict[str, str] = {}
    for _, data in config_entries([system_config, local_config], "paths.d"):
        if data["rktKind"] == "paths":
            out.update({k: str(data[k]) for k in PATHS_KEYS if data.get(k)})
    return out
