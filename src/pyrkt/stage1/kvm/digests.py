"""sha256 of the guest's kernel and initramfs, remembered by file identity.

The accelerator cache (accel.py) and the VM template key (templates/) name the stage1's
guest kernel and initramfs by content. Hashing them (a few MB: ~3 ms each) on every pod
start is not needed: the digest of a file unchanged since it was hashed is taken from
`DIR/cache/kvm-digests.json` (`pyrkt.filecache`: by the file's device, inode, size,
mtime and ctime).
"""

from __future__ import annotations

import os
from pathlib import Path

from pyrkt import filecache

CACHE_FILE = "kvm-digests.json"


def sha256(path: Path, cache_dir: Path | None) -> str:
    """The hex sha256 of the file at path, remembered in cache_dir (None: no cache)."""
    import hashlib

    with path.open("rb") as f:
        st = os.fstat(f.fileno())
        cache = cache_dir / CACHE_FILE if cache_dir is not None else None
        known = filecache.get(cache, path, st) if cache is not None else None
        if known is not None:
            return known
        h = hashlib.sha256()
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if cache is not None:
        filecache.put(cache, path, st, digest)
    return digest
