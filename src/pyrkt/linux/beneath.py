"""The one way host code touches a path the guest (or an image) can write.

A VM pod's shares (`POD/kvm/ctl`, the stage1 rootfs with `rkt/status`, the apps' rootfs,
volumes) are written by the guest, and the overlay upper folders keep what it wrote after
it exited: every name in them may be a symlink to a host file, a FIFO, a device node or
a huge file, and may change between two calls. Host code therefore never opens such a
path by name. It opens the share's root once (`Root(path)`, the root itself made by the
host) and resolves every path relative to that fd, in the kernel:

- `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` (Linux 5.6+),
  else (ENOSYS) one `openat(O_NOFOLLOW)` per component: a symlink anywhere in the path
  is refused (ELOOP or ENOTDIR), never followed; a `..` component or an absolute path is
  refused before any call (EXDEV), so nothing resolves outside the root.
- A file is first opened `O_PATH` (no driver's open runs, a FIFO does not block), its
  type checked with fstat (a regular file, or a folder where one is wanted: never a
  device, FIFO, socket or symlink), then reopened for reading through
  `/proc/self/fd/N`, which is the very same inode.
- Reads are bounded: `read` takes at most `limit` bytes and refuses a larger file
  (EFBIG); `copy_to` streams the size the file had when it was opened, at most `limit`.
- Writes create with `O_CREAT|O_EXCL|O_NOFOLLOW` (a name that exists is never written
  through); `write(replace=True)` writes a fresh temporary name then renames it over the
  target, so a planted symlink is replaced, not followed. Folders are made with mkdirat
  under the parent's fd.
- `rmtree` removes a tree through folder fds: symlinks are unlinked, never followed;
  it does not cross a mount point (another file system, or a bind mount of the same
  one: openat2's RESOLVE_NO_XDEV; the mount point stays, EXDEV); it holds one
  folder fd at a time and walks back up with `..` checked against the inode it came
  from, so a tree thousands of folders deep costs neither recursion nor fds.

Every failure is an `OSError` naming the operation and the path relative to its root;
`Refused` (an OSError) is a name that exists but is not what was asked for.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from pyrkt.linux.libc import libc
from pyrkt.linux.syscalls_x86_64 import SYSCALLS_X86_64

# openat2 is 437 on every architecture with the generic syscall table (x86_64, aarch64).
_NR_OPENAT2 = SYSCALLS_X86_64["openat2"]
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS

# What a small read takes when the caller names no bound.
SMALL = 64 * 1024
# At most this many names from one `listdir`.
MAX_ENTRIES = 4096
_CHUNK = 1 << 20


class Refused(OSError):
    """A name that exists but is not what the host asked for (type or size)."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


# None: not tried yet; False after ENOSYS (then every open walks with O_NOFOLLOW).
_openat2_works: bool | None = None


def use_openat2(on: bool | None) -> None:
    """Force the fallback (False), force openat2 (True), or probe again (None): tests."""
    global _openat2_works
    _openat2_works = on


def _parts(rel: str | os.PathLike[str]) -> list[str]:
    s = os.fspath(rel)
    if s.startswith("/"):
        raise OSError(errno.EXDEV, f"{s}: an absolute path, not beneath the root")
    parts = [p for p in s.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise OSError(errno.EXDEV, f"{s}: '..' would leave the root")
    return parts


def _openat2(dirfd: int, path: str, flags: int, mode: int,
             resolve: int = _RESOLVE) -> int | None:
    """openat2 beneath dirfd, or None when the kernel has no openat2."""
    global _openat2_works
    how = _OpenHow(flags, mode, resolve)
    ret = int(libc().syscall(ctypes.c_long(_NR_OPENAT2), ctypes.c_int(dirfd),
                             path.encode(), ctypes.byref(how), ctypes.c_size_t(24)))
    if ret >= 0:
        _openat2_works = True
        return ret
    err = ctypes.get_errno()
    if err == errno.ENOSYS:
        _openat2_works = False
        return None
    raise OSError(err, f"openat2({path}): {os.strerror(err)}")


def _walk_open(dirfd: int, parts: list[str], flags: int, mode: int) -> int:
    """The fallback: one openat per component, O_NOFOLLOW at every step."""
    fd = dirfd
    try:
        for comp in parts[:-1]:
            nfd = os.open(comp, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
            if fd != dirfd:
                os.close(fd)
            fd = nfd
        last = parts[-1] if parts else "."
        out = os.open(last, flags | os.O_NOFOLLOW, mode, dir_fd=fd)
    finally:
        if fd != dirfd:
            os.close(fd)
    if flags & os.O_PATH and stat.S_ISLNK(os.fstat(out).st_mode):
        os.close(out)  # O_PATH|O_NOFOLLOW opens the link itself: refuse it as openat2 does
        raise OSError(errno.ELOOP, f"{'/'.join(parts)}: a symlink")
    return out


def open_beneath(dirfd: int, rel: str | os.PathLike[str], flags: int, mode: int = 0) -> int:
    """An fd for rel under the folder dirfd: no symlink, no `..`, no absolute path."""
    parts = _parts(rel)
    flags |= os.O_CLOEXEC
    if _openat2_works is not False:
        fd = _openat2(dirfd, "/".join(parts) or ".", flags, mode)
        if fd is not None:
            return fd
    try:
        return _walk_open(dirfd, parts, flags, mode)
    except OSError as e:
        raise OSError(e.errno, f"openat({'/'.join(parts)}): {os.strerror(e.errno or 0)}") from e


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words ("a FIFO")."""
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


class Root:
    """A folder the guest can write, opened once by its host path; every operation
    takes a path relative to it. Use as a context manager (or `close()`)."""

    def __init__(self, path: str | os.PathLike[str], *, _fd: int | None = None) -> None:
        self.path = Path(path)
        # The root itself is the host's (a share's root, the pod's upper folder): not
        # followed if it is a symlink, its parents trusted.
        self.fd = _fd if _fd is not None else os.open(
            path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Root:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Root({str(self.path)!r})"

    # ---- opening --------------------------------------------------------------------

    def open(self, rel: str | os.PathLike[str], flags: int, mode: int = 0) -> int:
        return open_beneath(self.fd, rel, flags, mode)

    def open_dir(self, rel: str | os.PathLike[str]) -> Root:
        """The folder rel as a Root of its own (refused if it is anything else)."""
        fd = self.open(rel, os.O_PATH | os.O_DIRECTORY)
        return Root(self.path / os.fspath(rel), _fd=fd)

    def _open_regular(self, rel: str | os.PathLike[str],
                      limit: int | None) -> tuple[int, os.stat_result]:
        """A read-only fd for rel, checked to be a regular file of at most limit bytes."""
        pfd = self.open(rel, os.O_PATH)
        try:
            st = os.fstat(pfd)
            if not stat.S_ISREG(st.st_mode):
                raise Refused(errno.EINVAL, f"{rel}: {file_kind(st.st_mode)}, not a regular file")
            if limit is not None and st.st_size > limit:
                raise Refused(errno.EFBIG, f"{rel}: {st.st_size} bytes, more than {limit}")
            fd = os.open(f"/proc/self/fd/{pfd}",
                         os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        finally:
            os.close(pfd)
        return fd, st

    def open_regular(self, rel: str | os.PathLike[str]) -> int:
        """A read-only fd for the regular file rel (checked as `read` checks it), for a
        caller that follows a file the guest is still writing (the OCI runtime's exec)."""
        return self._open_regular(rel, None)[0]

    # ---- reading --------------------------------------------------------------------

    def read(self, rel: str | os.PathLike[str], limit: int = SMALL) -> bytes:
        """The content of the regular file rel; Refused when it is larger than limit."""
        return self.read_stat(rel, limit)[0]

    def read_stat(self, rel: str | os.PathLike[str],
                  limit: int = SMALL) -> tuple[bytes, os.stat_result]:
        """`read`, and the file's stat as it was opened."""
        fd, st = self._open_regular(rel, limit)
        try:
            data = b""
            while len(data) <= limit:
                chunk = os.read(fd, limit + 1 - len(data))
                if not chunk:
                    return data, st
                data += chunk
            raise Refused(errno.EFBIG, f"{rel}: grew beyond {limit} bytes")
        finally:
            os.close(fd)

    def read_text(self, rel: str | os.PathLike[str], limit: int = SMALL) -> str:
        return self.read(rel, limit).decode(errors="replace")

    def copy_to(self, rel: str | os.PathLike[str], out_fd: int, limit: int | None = None) -> int:
        """Copy the regular file rel to out_fd: the size it had when opened, at most
        limit (None: no bound but that size); the number of bytes copied."""
        fd, st = self._open_regular(rel, None)
        try:
            left = st.st_size if limit is None else min(st.st_size, limit)
            done = 0
            while left > 0:
                chunk = os.read(fd, min(left, _CHUNK))
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    n = os.write(out_fd, view)
                    view = view[n:]
                done += len(chunk)
                left -= len(chunk)
            return done
        finally:
            os.close(fd)

    def lstat(self, rel: str | os.PathLike[str]) -> os.stat_result:
        """stat of rel itself (a symlink is described, not followed)."""
        parts = _parts(rel)
        if not parts:
            return os.fstat(self.fd)
        with self._parent(parts) as parent:
            return os.stat(parts[-1], dir_fd=parent.fd, follow_symlinks=False)

    def is_regular(self, rel: str | os.PathLike[str]) -> bool:
        try:
            return stat.S_ISREG(self.lstat(rel).st_mode)
        except OSError:
            return False

    def is_dir(self, rel: str | os.PathLike[str]) -> bool:
        """rel is a folder itself (not a symlink to one)."""
        try:
            return stat.S_ISDIR(self.lstat(rel).st_mode)
        except OSError:
            return False

    def listdir(self, rel: str | os.PathLike[str] = ".", limit: int = MAX_ENTRIES) -> list[str]:
        """The names in folder rel, at most limit of them (Refused beyond)."""
        out: list[str] = []
        for name in self.iterdir(rel):
            if len(out) == limit:
                raise Refused(errno.EFBIG, f"{rel}: more than {limit} entries")
            out.append(name)
        return out

    def iterdir(self, rel: str | os.PathLike[str] = ".") -> Iterator[str]:
        fd = self.open(rel, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with os.scandir(fd) as it:
                for e in it:
                    yield e.name
        finally:
            os.close(fd)

    # ---- writing --------------------------------------------------------------------

    def _parent(self, parts: list[str]) -> Root:
        return self.open_dir("/".join(parts[:-1]) or ".")

    def mkdir(self, rel: str | os.PathLike[str], mode: int = 0o755, *,
              exist_ok: bool = False, parents: bool = False) -> None:
        """mkdirat under the parent's fd; an existing folder is fine with exist_ok, an
        existing anything else (a symlink to a folder too) is refused."""
        parts = _parts(rel)
        if not parts:
            return
        if parents and len(parts) > 1:
            self.mkdir("/".join(parts[:-1]), mode, exist_ok=True, parents=True)
        with self._parent(parts) as parent:
            try:
                os.mkdir(parts[-1], mode, dir_fd=parent.fd)
            except FileExistsError:
                if not exist_ok:
                    raise
                st = os.stat(parts[-1], dir_fd=parent.fd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise Refused(errno.EEXIST,
                                  f"{rel}: exists ({file_kind(st.st_mode)})") from None

    def symlink(self, rel: str | os.PathLike[str], target: str) -> None:
        """Create rel as a symbolic link to target (symlinkat under the parent's fd);
        FileExistsError when rel exists, whatever it is."""
        parts = _parts(rel)
        if not parts:
            raise OSError(errno.EEXIST, "cannot replace the root itself")
        with self._parent(parts) as parent:
            os.symlink(target, parts[-1], dir_fd=parent.fd)

    def write(self, rel: str | os.PathLike[str], data: bytes | str, mode: int = 0o644, *,
              replace: bool = True) -> None:
        """Create rel with data. replace=False: refused if rel exists (O_EXCL);
        replace=True: a new file renamed over whatever rel is (never written through)."""
        parts = _parts(rel)
        if not parts:
            raise OSError(errno.EISDIR, "cannot write the root itself")
        raw = data.encode() if isinstance(data, str) else data
        with self._parent(parts) as parent:
            name = parts[-1]
            tmp = f".{name}.{os.urandom(4).hex()}.tmp" if replace else name
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, mode, dir_fd=parent.fd)
            try:
                view = memoryview(raw)
                while view:
                    view = view[os.write(fd, view):]
                os.fchmod(fd, mode)  # not narrowed by the umask
            except BaseException:
                os.close(fd)
                os.unlink(tmp, dir_fd=parent.fd)
                raise
            os.close(fd)
            if replace:
                try:
                    os.rename(tmp, name, src_dir_fd=parent.fd, dst_dir_fd=parent.fd)
                except BaseException:
                    os.unlink(tmp, dir_fd=parent.fd)
                    raise

    def unlink(self, rel: str | os.PathLike[str], *, missing_ok: bool = True) -> None:
        """Remove the name rel (a symlink itself, never its target); not a folder."""
        parts = _parts(rel)
        with self._parent(parts) as parent:
            try:
                os.unlink(parts[-1], dir_fd=parent.fd)
            except FileNotFoundError:
                if not missing_ok:
                    raise

    def rmtree(self, rel: str | os.PathLike[str], *, missing_ok: bool = True) -> None:
        """Remove rel and everything under it without following a symlink (see the
        module docstring); raises the first failure after removing all it could."""
        parts = _parts(rel)
        if not parts:
            raise OSError(errno.EBUSY, "cannot remove the root itself")
        with self._parent(parts) as parent:
            name = parts[-1]
            try:
                st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
            except FileNotFoundError:
                if missing_ok:
                    return
                raise
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=parent.fd)
                return
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=parent.fd)
            errors = _empty_tree(fd, rel)  # closes fd
            try:
                os.rmdir(name, dir_fd=parent.fd)
            except OSError as e:
                errors.append(e)
            if errors:
                raise errors[0]


def _open_subdir(cur: int, name: str, flags: int) -> int:
    """The folder name in cur, refused (EXDEV) when it is a mount point: also a bind
    mount from the same file system, which st_dev cannot tell (openat2's
    RESOLVE_NO_XDEV; without openat2 only another file system is told, by st_dev)."""
    if _openat2_works is not False:
        fd = _openat2(cur, name, flags, 0, _RESOLVE | RESOLVE_NO_XDEV)
        if fd is not None:
            return fd
    return os.open(name, flags, dir_fd=cur)


def _empty_tree(top: int, rel: str | os.PathLike[str]) -> list[OSError]:
    """Remove everything in the folder top (an fd, closed here); the failures."""
    errors: list[OSError] = []
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    top_st = os.fstat(top)
    skip: set[tuple[int, int]] = set()  # (dev, ino) of what could not be removed
    # The way down, one (name, (dev, ino) of the folder holding it) per level.
    down: list[tuple[str, tuple[int, int]]] = []
    cur, cur_st = top, top_st
    try:
        while True:
            sub: tuple[str, tuple[int, int]] | None = None
            with os.scandir(cur) as it:
                for e in it:
                    try:
                        est = e.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    key = (est.st_dev, est.st_ino)
                    if key in skip:
                        continue
                    if stat.S_ISDIR(est.st_mode):
                        sub = (e.name, key)
                        break
                    try:
                        os.unlink(e.name, dir_fd=cur)
                    except FileNotFoundError:
                        pass
                    except OSError as err:
                        errors.append(err)
                        skip.add(key)
            if sub is not None:  # down into it
                try:
                    nfd = _open_subdir(cur, sub[0], flags)
                except FileNotFoundError:
                    continue
                except OSError as err:
                    if err.errno == errno.EXDEV:
                        err = OSError(errno.EXDEV, f"{rel}: a mount point inside")
                    errors.append(err)
                    skip.add(sub[1])
                    continue
                nst = os.fstat(nfd)
                if nst.st_dev != top_st.st_dev:  # a mount point: not ours to empty
                    os.close(nfd)
                    errors.append(OSError(errno.EXDEV, f"{rel}: a mount point inside"))
                    skip.add((nst.st_dev, nst.st_ino))
                    continue
                down.append((sub[0], (cur_st.st_dev, cur_st.st_ino)))
                if cur != top:
                    os.close(cur)
                cur, cur_st = nfd, nst
                continue
            if not down:
                return errors
            # cur is empty (but for what failed): back up to its parent, remove it.
            name, parent_id = down.pop()
            pfd = os.open("..", flags, dir_fd=cur)
            pst = os.fstat(pfd)
            if (pst.st_dev, pst.st_ino) != parent_id:
                os.close(pfd)
                errors.append(OSError(errno.ESTALE, f"{rel}: the tree moved while removed"))
                return errors
            done = (cur_st.st_dev, cur_st.st_ino)
            if cur != top:
                os.close(cur)
            if down:
                cur, cur_st = pfd, pst
            else:
                os.close(pfd)
                cur, cur_st = top, top_st
            try:
                os.rmdir(name, dir_fd=cur)
            except FileNotFoundError:
                pass
            except OSError as err:
                errors.append(err)
                skip.add(done)
    finally:
        if cur != top:
            os.close(cur)
        os.close(top)


def read_file(root: str | os.PathLike[str], rel: str, limit: int = SMALL) -> bytes:
    """One bounded read of root/rel (see `Root.read`)."""
    with Root(root) as r:
        return r.read(rel, limit)


def remove_tree(path: str | os.PathLike[str], *, missing_ok: bool = True) -> None:
    """Remove the folder path (its parent trusted) and everything under it, following
    no symlink under it."""
    p = Path(path)
    try:
        r = Root(p.parent)
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    with r:
        r.rmtree(p.name, missing_ok=missing_ok)
