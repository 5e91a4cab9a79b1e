"""ACI files on this host: which references are files, and the image ID each file that
was imported before has, without reading it again.

`rkt run IMAGE.aci` names an image by a file: its ID is the hash of its content, so
finding it in the store means reading (and decompressing) the whole file. rkt did that
on every run; here an imported file's identity (`linux.files.identity`: device, inode,
size, mtime, ctime) is recorded with its image ID in the store's index (the `remotes`
table, under `localfile:PATH`), and a later run of the very same, unchanged file takes
the ID from there. A file written, truncated, replaced or renamed over since has
another identity (its ctime at least: only the clock sets it), so it is read again; a
file changed within the last seconds is not recorded (`linux.files.settled`: ctime is
coarse). The record goes with its image (`rkt image rm`, `gc`). Only when nothing is
to be verified: with signature checks on, the file and its `.asc` are read and checked
every time (the trusted keys may have changed).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from pyrkt.linux.files import identity, settled

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyrkt.image.store import Store

IMAGE = "image"  # the prefix of rkt's image fetching messages
_KEY = "localfile:"  # the remotes table's ref for a file (URLs have schemes of their own)


def is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def local_path(ref: str) -> Path:
    return Path(unquote(urlparse(ref).path)) if ref.startswith("file://") else Path(ref)


def is_file_ref(ref: str) -> bool:
    """Whether an image reference (not an ID, docker://, oci: or a URL) names an ACI
    file: `file://`, `*.aci`, or an existing path with a slash (else it is a name)."""
    return ref.startswith("file://") or ref.endswith(".aci") or ("/" in ref and Path(ref).exists())


def known(store: Store, path: Path) -> str | None:
    """The image ID of the ACI file at path if it was imported as it is now, else None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    hit = store.remote_get(_KEY + os.path.abspath(path))
    if hit is None or hit[1].get("identity") != identity(st):
        return None
    return hit[0]


def remember(store: Store, path: Path, st: os.stat_result, image_id: str) -> None:
    """Record that the file at path, as `st` (taken before it was read) says it was, is
    image_id; nothing when it changed meanwhile or too recently to tell."""
    try:
        now = os.stat(path)
    except OSError:
        return
    if identity(now) == identity(st) and settled(st):
        store.remote_put(_KEY + os.path.abspath(path), image_id, {"identity": identity(st)})
