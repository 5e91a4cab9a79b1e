"""The data directory's folders and their permissions, as rkt's packaging set them
(`dist/init/systemd/tmpfiles.d/rkt.conf`, `dist/scripts/setup-data-dir.sh`):

    DIR                      2750 root:rkt   members of the `rkt` group may enter
    DIR/pods, pods/<state>   2750 root:rkt   ... and read pods (`list`, `status`)
    DIR/cas                  2770 root:rkt   ... and write the store (`fetch`)
    DIR/cas/{db,blobs,tmp,locks}  2770 root:rkt; cas/db/index.sqlite 0660
    DIR/cas/trees            2700 root:rkt   rendered trees: root only

When root creates one of these folders it gets this owner and mode (the group is
root's where no `rkt` group exists: then nobody else may read the data directory);
a folder that exists is left as its administrator set it. The setgid bit makes what
members create in the store belong to the group. A pod's own folder drops the bit
(`private_folder`), so that what its apps and its VM write inside does not inherit it,
as rkt turned it off on a pod's overlay folder.
"""

from __future__ import annotations

import os
from pathlib import Path

RKT_GROUP = "rkt"

MODES: dict[str, int] = {
    ".": 0o2750,
    "pods": 0o2750,
    **{f"pods/{s}": 0o2750
       for s in ("embryo", "prepare", "prepared", "run", "exited-garbage", "garbage")},
    "cas": 0o2770,
    "cas/db": 0o2770,
    "cas/blobs": 0o2770,
    "cas/tmp": 0o2770,
    "cas/locks": 0o2770,
    "cas/trees": 0o2700,
}  # fmt: skip
SHARED_FILE_MODE = 0o660  # the store's index and lock files: members write them too

_gid: int | None = None


def rkt_gid() -> int:
    """The `rkt` group's ID, or -1 when there is none (looked up once)."""
    global _gid
    if _gid is None:
        import grp

        try:
            _gid = grp.getgrnam(RKT_GROUP).gr_gid
        except KeyError:
            _gid = -1
    return _gid


def make(data_dir: Path, *rels: str) -> None:
    """Create the folders `rels` of the data directory that are missing (and their
    parents, up to the directory itself), each with its owner and mode from MODES.
    One mkdir per folder that exists: this runs on `rkt run`'s path."""
    top = os.fspath(data_dir)
    for rel in rels:
        _make(top, rel)


def _make(data_dir: str, rel: str) -> None:
    path = f"{data_dir}/{rel}"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    except FileNotFoundError:
        parent = rel.rpartition("/")[0]
        if parent:
            _make(data_dir, parent)
        else:
            os.makedirs(os.path.dirname(data_dir) or ".", exist_ok=True)
            _make_top(data_dir)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            return
    _own(path, MODES[rel])


def _make_top(data_dir: str) -> None:
    try:
        os.mkdir(data_dir, 0o700)
    except FileExistsError:
        return
    _own(data_dir, MODES["."])


def _own(path: str, mode: int) -> None:
    if os.geteuid() == 0:
        gid = rkt_gid()
        os.chown(path, 0, gid if gid >= 0 else 0)
    os.chmod(path, mode)


def private_folder(path: Path) -> None:
    """Drop the setgid bit a new folder inherited from its parent (keeping its group)."""
    os.chmod(path, 0o750)


def share_file(fd: int) -> None:
    """Make a store file that root created writable by the group (SHARED_FILE_MODE)."""
    st = os.fstat(fd)
    if st.st_uid == os.geteuid() and st.st_mode & 0o777 != SHARED_FILE_MODE:
        os.fchmod(fd, SHARED_FILE_MODE)
