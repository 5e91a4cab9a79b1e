"""Applying tar layers to a root directory, safely, in one streaming pass.

`apply_layer(stream, root)` reads a (gzip, zstd or plain: detected by magic bytes) tar
stream and applies it to `root`: regular files, directories, symlinks, hardlinks, device
nodes and fifos, with permissions, ownership (as root), mtimes and `SCHILY.xattr.*`
extended attributes; OCI/Docker whiteouts (`.wh.NAME` removes NAME, `.wh..wh..opq`
empties the directory of what lower layers put there).

Nothing is ever written outside `root`, whatever the tar says. Every path is walked one
component at a time from a directory fd with O_NOFOLLOW, never joined into a string and
opened: a `..` component is refused, a leading `/` is taken relative to `root`, and a
symlink met where a directory is needed is refused (rather than followed). Files are
created with O_EXCL|O_NOFOLLOW (what holds the name is removed and the creation
retried), so an existing symlink is replaced, never written through. Hardlink sources are
resolved the same way, so they cannot name anything outside `root`. A refused entry
raises `LayerError`.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from pathlib import Path

from pyrkt import log
from pyrkt.errors import RktError
from pyrkt.image.streams import ByteStream, decompressed, decompressed_chunks
from pyrkt.image.tarstream import TarStream

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyrkt.image.limits import Budget

__all__ = ["ByteStream", "LayerError", "apply_layer", "decompressed", "split_path"]

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class LayerError(RktError):
    """A layer that cannot be applied (hostile or corrupt)."""


def split_path(name: str) -> list[str]:
    """Tar member name -> path components inside the root; refuses `..`."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"layer entry {name!r} escapes the image root (contains '..')")
    return parts


class _Applier:
    def __init__(self, root_fd: int, *, whiteouts: bool, same_owner: bool) -> None:
        self.root_fd = root_fd
        self.whiteouts = whiteouts
        self.same_owner = same_owner
        self.created: set[tuple[str, ...]] = set()
        self.dir_times: list[tuple[list[str], int]] = []
        self._cached: tuple[tuple[str, ...], int] | None = None
        self._stale: list[int] = []

    # -- walking ---------------------------------------------------------------------

    def open_dir(self, parts: list[str], *, create: bool, entry: str) -> int:
        """An fd for root/parts (a real directory inside root; created if asked)."""
        fd = os.dup(self.root_fd)
        try:
            for comp in parts:
                try:
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise LayerError(
                            f"layer entry {entry!r}: {'/'.join(parts)!r} does not exist"
                        ) from None
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise LayerError(
                            f"layer entry {entry!r}: {comp!r} is a symlink or file, "
                            "not a directory; refusing to write through it"
                        ) from None
                    raise
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def parent(self, parts: list[str], entry: str) -> int:
        """An fd for the parent of root/parts; the last one is kept for the next entry
        (tars list a directory's files together), dropped whenever a directory is removed.
        """
        key = tuple(parts[:-1])
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        fd = self.open_dir(parts[:-1], create=True, entry=entry)
        self.drop_cache()
        self._cached = (key, fd)
        return fd

    def drop_cache(self) -> None:
        """Forget the cached fd (it may still be in use: it is closed later)."""
        if self._cached is not None:
            self._stale.append(self._cached[1])
            self._cached = None

    def close_fds(self, *, all_fds: bool = False) -> None:
        for fd in self._stale:
            os.close(fd)
        self._stale.clear()
        if all_fds and self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    # -- entries ---------------------------------------------------------------------

    def remove(self, dfd: int, name: str) -> None:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            self.drop_cache()
            shutil.rmtree(name, dir_fd=dfd)
        else:
            os.unlink(name, dir_fd=dfd)

    def whiteout(self, parts: list[str], entry: str) -> None:
        name = parts[-1]
        try:
            dfd = self.open_dir(parts[:-1], create=False, entry=entry)
        except LayerError:
            return  # nothing there to hide
        try:
            if name == OPAQUE_WHITEOUT:
                prefix = tuple(parts[:-1])
                for child in os.listdir(dfd):
                    if (*prefix, child) not in self.created:
                        self.remove(dfd, child)
            else:
                self.remove(dfd, name[len(WHITEOUT_PREFIX) :])
        finally:
            os.close(dfd)

    def apply(self, tf: TarStream, m: tarfile.TarInfo) -> None:
        parts = split_path(m.name)
        if not parts:
            if m.isdir():
                self.dir_times.append(([], int(m.mtime)))
            return
        name = parts[-1]
        if self.whiteouts and name.startswith(WHITEOUT_PREFIX):
            self.whiteout(parts, m.name)
            return
        for i in range(len(parts), 0, -1):  # the entry and the parents it implies
            key = tuple(parts[:i])
            if key in self.created:
                break
            self.created.add(key)
        self.close_fds()
        dfd = self.parent(parts, m.name)
        if m.isdir():
            self.make_dir(dfd, name, m)
            self.dir_times.append((parts, int(m.mtime)))
            return
        try:
            self.create(tf, dfd, name, m)
        except FileExistsError:  # replace what a lower layer (or this one) put there
            self.remove(dfd, name)
            self.create(tf, dfd, name, m)

    def create(self, tf: TarStream, dfd: int, name: str, m: tarfile.TarInfo) -> None:
        """Create a non-directory entry; FileExistsError if the name is taken."""
        if m.isreg():
            self.write_file(tf, dfd, name, m)
        elif m.issym():
            os.symlink(m.linkname, name, dir_fd=dfd)
            self.set_owner(dfd, name, m)
            os.utime(name, ns=_ns(m), dir_fd=dfd, follow_symlinks=False)
        elif m.islnk():
            self.hardlink(dfd, name, m)
        elif m.ischr() or m.isblk() or m.isfifo():
            self.make_node(dfd, name, m)
        else:
            log.debug(f"layer: skipping {m.name!r} of unsupported type {m.type!r}")

    def make_dir(self, dfd: int, name: str, m: tarfile.TarInfo) -> None:
        try:
            os.mkdir(name, 0o700, dir_fd=dfd)
        except FileExistsError:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self.remove(dfd, name)
                os.mkdir(name, 0o700, dir_fd=dfd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        try:
            if self.same_owner:
                os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
        finally:
            os.close(fd)

    def write_file(self, tf: TarStream, dfd: int, name: str, m: tarfile.TarInfo) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=dfd)
        try:
            tf.copy_to(fd)
            if self.same_owner:
                os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            for key, value in (m.pax_headers or {}).items():
                if key.startswith("SCHILY.xattr."):
                    try:
                        os.setxattr(fd, key[len("SCHILY.xattr.") :], value.encode("utf-8",
                                    "surrogateescape"))  # fmt: skip
                    except OSError as e:
                        log.debug(f"layer: xattr {key} on {m.name!r} not set: {e}")
            os.utime(fd, ns=_ns(m))
        finally:
            os.close(fd)

    def hardlink(self, dfd: int, name: str, m: tarfile.TarInfo) -> None:
        target = split_path(m.linkname)
        if not target:
            raise LayerError(f"layer entry {m.name!r}: hardlink to the root itself")
        sfd = self.open_dir(target[:-1], create=False, entry=m.name)
        try:
            try:
                os.link(target[-1], name, src_dir_fd=sfd, dst_dir_fd=dfd,
                        follow_symlinks=False)  # fmt: skip
            except FileNotFoundError:
                raise LayerError(
                    f"layer entry {m.name!r}: hardlink target {m.linkname!r} does not exist"
                ) from None
        finally:
            os.close(sfd)

    def make_node(self, dfd: int, name: str, m: tarfile.TarInfo) -> None:
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
        try:
            os.mknod(name, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor),
                     dir_fd=dfd)  # fmt: skip
        except PermissionError:
            log.debug(f"layer: cannot create device node {m.name!r} (not root)")
            return
        self.set_owner(dfd, name, m)
        os.chmod(name, m.mode & 0o7777, dir_fd=dfd)

    def set_owner(self, dfd: int, name: str, m: tarfile.TarInfo) -> None:
        if self.same_owner:
            os.chown(name, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)

    def finish(self) -> None:
        """Directory mtimes last: writing their children changed them."""
        for parts, mtime in reversed(self.dir_times):
            try:
                fd = self.open_dir(parts, create=False, entry="/".join(parts))
            except (LayerError, OSError):
                continue
            try:
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)


def _ns(m: tarfile.TarInfo) -> tuple[int, int]:
    t = int(m.mtime * 1_000_000_000)
    return (t, t)


def apply_layer(stream: ByteStream, root: Path, *, whiteouts: bool = True,
                budget: Budget | None = None, layer: str = "") -> int:  # fmt: skip
    """Apply one layer to root (which must exist). Returns the uncompressed tar size.

    `budget` meters the uncompressed bytes (`layer` names this one in its errors): past
    a cap, or short of space, it raises before the next chunk is written."""
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        applier = _Applier(root_fd, whiteouts=whiteouts, same_owner=os.geteuid() == 0)
        chunks = decompressed_chunks(stream)
        try:
            ts = TarStream(chunks if budget is None else budget.meter(chunks, layer))
            for m in ts:
                applier.apply(ts, m)
            size = ts.size
        except RktError:
            raise
        except Exception as e:  # tar, gzip, zlib, zstandard and OS errors alike
            raise LayerError(f"cannot apply layer: {e}") from e
        finally:
            chunks.close()
            applier.close_fds(all_fds=True)
        applier.finish()
        return size
    finally:
        os.close(root_fd)
