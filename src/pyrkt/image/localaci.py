"""ACI files on this host: which references are files, and the image ID each file that
was imported before has, without reading it again.

`rkt run IMAGE.aci` names an image by a file: its ID is the hash of its content, so
finding it in the store means reading (and decompressing) the whole file. rkt did that
on every run; here an imported file's image ID is remembered by the file's path and
identity (`pyrkt.filecache`, in `DIR/cache/aci-files.json`: root's, not the store's
index, which members of the rkt group write), and a later run of the very same,
unchanged file takes the ID from there while the store still has that image. A file
written, truncated, replaced or renamed over since has another identity (its ctime at
least: only the clock sets it), so it is read again. Only when nothing is to be
verified: with signature checks on, the file and its `.asc` are read and checked every
time (the trusted keys may have changed).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from pyrkt import filecache

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyrkt.image.store import Store

IMAGE = "image"  # the prefix of rkt's image fetching messages
CACHE_FILE = "aci-files.json"  # in DIR/cache


def is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def local_path(ref: str) -> Path:
    return Path(unquote(urlparse(ref).path)) if ref.startswith("file://") else Path(ref)


def is_file_ref(ref: str) -> bool:
    """Whether an image reference (not an ID, docker://, oci: or a URL) names an ACI
    file: `file://`, `*.aci`, or an existing path with a slash (else it is a name)."""
    return ref.startswith("file://") or ref.endswith(".aci") or ("/" in ref and Path(ref).exists())


def known(store: Store, cache_dir: Path, path: Path) -> str | None:
    """The image ID of the ACI file at path if it was imported as it is now and the
    store still has that image, else None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    image_id = filecache.get(cache_dir / CACHE_FILE, path, st)
    if image_id is None or store.get(image_id) is None:
        return None
    return image_id


def remember(cache_dir: Path, path: Path, st: os.stat_result, image_id: str) -> None:
    """Record that the file at path, as `st` (taken before it was read) says it was, is
    image_id (nothing for a file changed too recently to tell)."""
    filecache.put(cache_dir / CACHE_FILE, path, st, image_id)
