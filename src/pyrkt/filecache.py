"""What was computed from a file's content (its digest, its image ID), remembered by the
file's path and identity, so that an unchanged file is not read again.

A cache is a small JSON map in rkt's own cache folder (`DIR/cache`, written by root
only): path -> [the file's identity (`linux.files.identity`: device, inode, size,
mtime, ctime), the value]. A value is given back only while the file's identity is
the one recorded: any write, truncation, chmod or rename over the file changes its
ctime, which only the clock sets. A file changed within the last seconds is not recorded
(`linux.files.settled`: ctime is coarse, a write in the same tick would not change it).
Writes are atomic (a rename); a cache that cannot be read or written is no cache.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from pyrkt.linux.files import identity, settled

MAX_ENTRIES = 256  # files; past it, the older half is forgotten


def get(cache: Path, path: Path, st: os.stat_result) -> str | None:
    """The value recorded for the file at path if st (its stat now) is its identity
    then."""
    hit = _load(cache).get(os.path.abspath(path))
    if isinstance(hit, list) and hit[:-1] == identity(st) and isinstance(hit[-1], str):
        return hit[-1]
    return None


def put(cache: Path, path: Path, st: os.stat_result, value: str) -> None:
    """Record value for the file at path as st (taken before it was read) shows it;
    nothing for a file changed too recently to tell."""
    if not settled(st):
        return
    known = _load(cache)
    known[os.path.abspath(path)] = [*identity(st), value]
    if len(known) > MAX_ENTRIES:
        known = dict(list(known.items())[-MAX_ENTRIES // 2:])
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
    with contextlib.suppress(OSError):  # a cache: computed again next time
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(known))
        os.replace(tmp, cache)


def _load(cache: Path) -> dict[str, object]:
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
