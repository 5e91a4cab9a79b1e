"""An image's rendered tree as a filesystem image: what a VM pod's app gets as its disk.

`disk_image(tree)` is `tree/rootfs.2.ext4` (beside the tree's `rootfs/` in the store,
`cas/trees/<id>/`), built on first use with `mkfs.ext4 -d` (e2fsprogs copies the tree
without mounting anything: ownership, modes, hard links, device nodes, FIFOs, sockets,
symlinks, xattrs and holes as they are) and shared read-only by every pod of that image
(each pod writes to its own copy-on-write layer, `stage1/kvm/disks.py`). A tree never
changes (its ID names its content), so neither does its disk image; it goes away with
the tree (`Store.gc_storage` renames the whole tree folder away).

The filesystem is ext4 with its journal (a VM killed mid-write leaves its layer
consistent for `rkt export`), `VIRTUAL_SIZE` bigger than the tree: that free space is
what every pod of the image can write (the file is sparse: it costs what the tree holds).
Inode tables are zeroed by mkfs (it discards the new sparse file first, so they are
holes, free), so the guest's kernel has no lazy initialisation to write into each pod's
layer; the journal is a hole already (`lazy_journal_init`). mkfs gives the root 0755 and
a lost+found: `debugfs -w` (no mount) gives the root the tree's mode, removes a
lost+found the tree does not have, and adds the mount points and /etc files every pod
needs (`pod_paths`).

Concurrency and crashes: one builder at a time per tree (`flock` on `.NAME.lock`),
written to a temporary name and renamed into place, so a reader sees a whole image or
none; a killed build leaves a temporary file that the next build replaces.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from pyrkt import log, proc
from pyrkt.errors import RktError

# The version in the name changes with what an image holds (its build options, the
# paths added: pod_paths), so that an image made by another version is never used.
FORMAT = 2
NAME = f"rootfs.{FORMAT}.ext4"
# Free space every pod of the image can write into, on top of what the tree holds.
FREE_BYTES = 8 << 30
MKFS = "mkfs.ext4"


def disk_image_path(tree: Path) -> Path:
    return tree / NAME


def _tree_bytes(root: Path) -> tuple[int, int]:
    """(bytes the tree's files use, number of entries), without following links."""
    used = 0
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            count += 1
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                used += st.st_blocks * 512
    return used, count


def virtual_size(used: int) -> int:
    """The filesystem's size for a tree using `used` bytes: twice that (ext4's metadata,
    a margin) plus FREE_BYTES, in whole MiB."""
    size = 2 * used + FREE_BYTES
    return (size + (1 << 20) - 1) & ~((1 << 20) - 1)


# What every VM pod's app needs in its rootfs, added to an image's filesystem image
# where the tree lacks it (the 9p path makes them in each pod's overlay instead): the
# mount points of /proc, /sys, /dev and the targets of the pod's /etc files that every
# pod has, so that the guest needs no `mkdir` or extra `mount` (a fork+exec each).
POD_DIRS = ("proc", "sys", "dev")
POD_FILES = ("hostname", "hosts")  # in /etc
# The symlinks of /etc that stage0 gives every app (stage0/mounts.mount_pod, as rkt's
# stage0): in a 9p pod's overlay, on a disk in its image.
POD_LINKS = (("mtab", "../proc/self/mounts"),)  # in /etc


def pod_paths(rootfs: Path) -> tuple[list[str], list[str], list[str], list[str]]:
    """For a tree's rootfs: (POD_DIRS to add, POD_FILES to add, POD_DIRS and POD_FILES
    that the filesystem image has as plain folders and files once built). A symlink,
    or /etc not a plain folder, is left alone (the guest resolves it in the app's root)."""
    add_dirs, dirs = _missing_or(rootfs, POD_DIRS, stat.S_ISDIR)
    etc = rootfs / "etc"
    if not etc.is_dir() or etc.is_symlink():
        return add_dirs, [], dirs, []
    add_files, files = _missing_or(etc, POD_FILES, stat.S_ISREG)
    return add_dirs, add_files, dirs, files


def pod_links(rootfs: Path) -> list[tuple[str, str]]:
    """The POD_LINKS a tree's rootfs lacks: none where /etc is not a plain folder or
    already has the name (whatever it is), as stage0 leaves those alone."""
    etc = rootfs / "etc"
    if not etc.is_dir() or etc.is_symlink():
        return []
    return [(n, to) for n, to in POD_LINKS if not os.path.lexists(etc / n)]


def _missing_or(folder: Path, names: tuple[str, ...],
                kind: Callable[[int], bool]) -> tuple[list[str], list[str]]:
    """(the names missing in folder, the names missing or of that kind there)."""
    missing, have = [], []
    for n in names:
        try:
            st = os.lstat(folder / n)
        except FileNotFoundError:
            missing.append(n)
            have.append(n)
            continue
        if kind(st.st_mode):
            have.append(n)
    return missing, have


def disk_image(tree: Path) -> Path:
    """The tree's filesystem image, built first if it has none (see the module doc)."""
    out = disk_image_path(tree)
    if out.is_file():
        return out
    from pyrkt.image.store import flocked

    with flocked(tree / f".{NAME}.lock"):
        if not out.is_file():
            build(tree / "rootfs", out, pod=True)
    return out


def empty_image(cache: Path, mode: int, uid: int, gid: int) -> Path:
    """An empty filesystem whose root has this mode and owner (an `empty` volume of a VM
    pod on disks), built once into cache."""
    import tempfile

    from pyrkt.image.store import flocked

    out = cache / f"empty-{mode & 0o7777:o}-{uid}-{gid}.ext4"
    if out.is_file():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    with flocked(cache / f".{out.name}.lock"):
        if not out.is_file():
            with tempfile.TemporaryDirectory(dir=cache) as td:
                root = Path(td) / "rootfs"
                root.mkdir()
                os.chown(root, uid, gid)
                root.chmod(mode & 0o7777)
                build(root, out)
    return out


def build(rootfs: Path, out: Path, *, pod: bool = False) -> None:
    """mkfs.ext4 -d rootfs into out (atomically: a temporary file renamed); pod: with
    the paths every pod needs (pod_paths)."""
    import shutil

    if shutil.which(MKFS) is None:
        raise RktError(f"{MKFS} not found", "install e2fsprogs")
    used, count = _tree_bytes(rootfs)
    size = virtual_size(used)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as f:
        f.truncate(size)  # sparse: mkfs's zeroing of the inode tables punches holes
    try:
        st = rootfs.stat()
        proc.run([
            MKFS, "-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256",
            "-L", "rkt-rootfs", "-m", "0",
            "-E", f"lazy_itable_init=0,lazy_journal_init=1,"
                  f"root_owner={st.st_uid}:{st.st_gid}",
            "-d", rootfs, tmp,
        ], capture=True)  # fmt: skip
        # mkfs gives the root 0755 and a lost+found: the tree's mode, and no lost+found
        # the tree does not have (debugfs edits the new image, no mount).
        edits = f"sif / mode 0{st.st_mode:o}\n"
        if not os.path.lexists(rootfs / "lost+found"):
            edits += "rmdir lost+found\n"
        empty = out.with_name(f".{out.name}.{os.getpid()}.empty")
        if pod:
            add_dirs, add_files, _, _ = pod_paths(rootfs)
            edits += "".join(f"mkdir {d}\n" for d in add_dirs)
            edits += "".join(f"write {empty} etc/{n}\n" for n in add_files)
            edits += "".join(f"symlink etc/{n} {to}\n" for n, to in pod_links(rootfs))
            empty.write_bytes(b"")
            empty.chmod(0o644)
        try:
            proc.run(["debugfs", "-w", "-f", "-", tmp], input=edits, capture=True)
        finally:
            empty.unlink(missing_ok=True)
        os.chmod(tmp, 0o444)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.debug(f"image: {out} built ({count} entries, {used >> 20} MiB used, "
              f"{size >> 20} MiB filesystem)")
