"""sha256 of the guest's kernel and initramfs, remembered by file identity.

The accelerator cache (accel.py) and the VM template key (templates/) name the stage1's
guest kernel and initramfs by content. Hashing them (a few MB: ~3 ms each) on every pod
start is not needed: a file whose identity (`linux.files.identity`: device, inode,
size, mtime, ctime) is the one recorded with a digest in `DIR/cache/kvm-digests.json`
has that digest. Any change to the file changes its identity (its ctime at least), so it
is hashed again; a file changed in the last seconds is not recorded
(`linux.files.settled`). The cache is rkt's own (root's data folder), never the guest's.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from pyrkt.linux.files import identity, settled

CACHE_FILE = "kvm-digests.json"
MAX_ENTRIES = 64  # files (a few per stage1 image); the oldest half goes past it


def sha256(path: Path, cache_dir: Path | None) -> str:
    """The hex sha256 of the file at path, from cache_dir's record when the file is the
    one recorded (None: no cache)."""
    import hashlib

    with path.open("rb") as f:
        st = os.fstat(f.fileno())
        known = _load(cache_dir) if cache_dir is not None else {}
        hit = known.get(str(path))
        if isinstance(hit, list) and hit[:-1] == identity(st) and isinstance(hit[-1], str):
            return hit[-1]
        h = hashlib.sha256()
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if cache_dir is not None and settled(st):
        known[str(path)] = [*identity(st), digest]
        _save(cache_dir, known)
    return digest


def _load(cache_dir: Path) -> dict[str, object]:
    try:
        data = json.loads((cache_dir / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(cache_dir: Path, known: dict[str, object]) -> None:
    if len(known) > MAX_ENTRIES:
        known = dict(list(known.items())[-MAX_ENTRIES // 2:])
    cache = cache_dir / CACHE_FILE
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
    with contextlib.suppress(OSError):  # a cache: hashed again next time
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(known))
        os.replace(tmp, cache)
