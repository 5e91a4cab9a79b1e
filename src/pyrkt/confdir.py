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
from pyrkt.record import record


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


@record
class Stage1Config:
    """rkt's `stage1` kind, merged: the name and version as a pair, the location apart
    (later config dirs override earlier ones per pair, as rkt's override semantics);
    each with the file that set it."""

    name: str = ""
    version: str = ""
    location: str = ""
    name_file: Path | None = None
    location_file: Path | None = None


_LOCATION_SCHEMES = ("file://", "docker://", "http://", "https://")


def stage1_config(dirs: Iterable[Path]) -> Stage1Config:
    """The `stage1.d` entries of dirs (lowest precedence first), checked as rkt did."""
    name = version = location = ""
    name_file: Path | None = None
    location_file: Path | None = None
    for f, data in config_entries(dirs, "stage1.d"):
        if data["rktKind"] != "stage1":
            continue
        n, v, loc = (str(data.get(k) or "") for k in ("name", "version", "location"))
        if bool(n) != bool(v):
            missing = "version" if n else "name"
            raise RktError(
                f"invalid configuration file {f}: default stage1 image name and version "
                f"go together, {missing} is missing"
            )
        if loc and not loc.startswith("/") and not loc.startswith(_LOCATION_SCHEMES):
            raise RktError(
                f"invalid configuration file {f}: default stage1 image location {loc!r} is "
                "neither an absolute path nor a file://, docker://, http:// or https:// URL"
            )
        if n:
            name, version, name_file = n, v, f
        if loc:
            location, location_file = loc, f
    return Stage1Config(name, version, location, name_file, location_file)
