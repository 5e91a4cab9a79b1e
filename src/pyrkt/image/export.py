"""Getting images out of the store: as an ACI file, or as a directory tree.

An image imported as an ACI is exported byte for byte (so it re-imports with the same
ID). A docker/OCI image is written as a deterministic ACI: `manifest` first, then
`rootfs/` walked in sorted order, ownership numeric, hardlinks kept.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from pyrkt import proc
from pyrkt.errors import RktError
from pyrkt.image.store import Store


def _prepare_dest(dest: Path, overwrite: bool) -> None:
    if dest.exists() or dest.is_symlink():
        if not overwrite:
            raise RktError(f"{dest} already exists", "use --overwrite")
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        else:
            dest.unlink()


def export_aci(store: Store, image_id: str, dest: Path, *, overwrite: bool = False) -> None:
    _prepare_dest(dest, overwrite)
    tmp = dest.with_name(f".{dest.name}.partial")
    blob = store.blob_path(image_id)
    if blob is not None:
        shutil.copyfile(blob, tmp)
    else:
        tree = store.render(image_id)
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
            tf.add(tree / "manifest", "manifest", recursive=False)
            _add_tree(tf, tree / "rootfs", "rootfs")
    os.rename(tmp, dest)


def _add_tree(tf: tarfile.TarFile, root: Path, arc: str) -> None:
    def norm(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uname = ti.gname = ""
        return ti

    tf.add(root, arc, recursive=False, filter=norm)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        base = arc if rel == "." else f"{arc}/{rel}"
        for name in sorted(dirnames + filenames):
            tf.add(os.path.join(dirpath, name), f"{base}/{name}", recursive=False,
                   filter=norm)  # fmt: skip


def extract_tree(store: Store, image_id: str, dest: Path, *, rootfs_only: bool,
                 overwrite: bool) -> None:  # fmt: skip
    """Copy the rendered tree (or just its rootfs) to dest, preserving everything."""
    _prepare_dest(dest, overwrite)
    tree = store.render(image_id)
    src = tree / "rootfs" if rootfs_only else tree
    proc.run(["cp", "-a", "--", src, dest])
