"""The template store: one folder per template key, locks, validity, `rkt gc`.

    DIR/cache/kvm-templates/
      KEY/            meta.json, state (QEMU's saved device state), serial.log (its
                      boot), qemu.log, share/ (the empty folder behind its 9p devices)
      KEY.lock        flock: exclusive to make or remove KEY, shared while a pod
                      restores from it (from its check until its QEMU has loaded it)
      KEY.failed      making or restoring KEY failed (the reason): pods boot without
                      it until `rkt gc` removes this
      .build-KEY-X/   a template being made; renamed to KEY when complete
    /dev/shm/pyrkt-kvm-templates/   (RAM_ROOT: a tmpfs; DIR/cache/kvm-templates if it
                      cannot be had: not a folder of ours)
      KEY-X.ram       the guest RAM file of template KEY (its pages are what pods share)
      KEY-X.owner     the build folder and the template folder that use KEY-X.ram

A template is used only while meta.json names it by its key and protocol, and its RAM
and state files are the very files it recorded (inode, size, mtime, ctime): a file
written, truncated or replaced since (by anything: a pod's QEMU holds the RAM file open
read-write, as QEMU 7.2 cannot map a file it opened read-only privately) makes it
broken, and the pod that finds it so removes it and boots without a template.
`rkt gc` removes templates that are broken, whose QEMU changed, or that no pod used for
the grace period; the RAM files whose template folder is gone (a data dir removed);
builds left by a killed `rkt run` (their QEMU too); and the failure marks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pyrkt import log
from pyrkt.record import record
from pyrkt.stage1.kvm.templates.shape import KERNEL_HEAD, PROTOCOL, SERIAL_LOG

STORE = "kvm-templates"
RAM_ROOT = Path("/dev/shm/pyrkt-kvm-templates")
META = "meta.json"
STATE = "state"
MAX_META = 1 << 16
BUILD_PREFIX = ".build-"


class Unavailable(Exception):
    """No template for this pod: the one-line reason (said under --debug)."""


@record
class Template:
    key: str
    folder: Path
    ram: Path
    state: Path

    @property
    def serial_log(self) -> Path:
        return self.folder / SERIAL_LOG

    @property
    def kernel_head(self) -> Path:
        return self.folder / KERNEL_HEAD


def store_dir(cache_dir: Path) -> Path:
    return cache_dir / STORE


def ram_dir(store: Path) -> Path:
    """Where RAM files go: RAM_ROOT (made 0700) when it is a folder of ours that only we
    can write, else the store itself."""
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        RAM_ROOT.mkdir(mode=0o700)
    if _private(RAM_ROOT):
        return RAM_ROOT
    log.debug(f"kvm: {RAM_ROOT} is not a private folder of ours: RAM files in {store}")
    return store


def _private(folder: Path) -> bool:
    """Whether folder is a folder (not a link) of ours that only we can write."""
    try:
        st = folder.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def file_id(st: os.stat_result) -> list[int]:
    """What must not change in a template's file."""
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def read_meta(folder: Path) -> dict[str, object]:
    """folder/meta.json (a regular file, bounded), {} when missing or unreadable."""
    try:
        fd = os.open(folder / META, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        data = os.read(fd, MAX_META + 1)
        meta = json.loads(data) if len(data) <= MAX_META else None
    except (OSError, ValueError):
        meta = None
    finally:
        os.close(fd)
    return meta if isinstance(meta, dict) else {}


def write_meta(folder: Path, key: str, ram: Path, vm: str,
               qemu_files: list[list[object]]) -> None:
    """folder/meta.json for a template just made in folder (its state file is there):
    what `check` requires of it later."""
    meta = {
        "key": key, "protocol": PROTOCOL, "made": time.time(), "vm": vm,
        "ram": str(ram), "ram_id": file_id(ram.stat()),
        "state_id": file_id((folder / STATE).stat()),
        "kernel_id": file_id((folder / KERNEL_HEAD).stat()), "qemu_files": qemu_files,
    }
    (folder / META).write_text(json.dumps(meta, indent=1) + "\n")


def check(store: Path, key: str) -> tuple[Template | None, str]:
    """The template KEY if it is complete and unchanged; else None and why not."""
    folder = store / key
    meta = read_meta(folder)
    if not meta:
        return None, "it has no readable meta.json" if folder.exists() else "there is none"
    if meta.get("key") != key or meta.get("protocol") != PROTOCOL:
        return None, "its meta.json names another key or protocol"
    t = Template(key, folder, Path(str(meta.get("ram"))), folder / STATE)
    for what, path, recorded in (("RAM", t.ram, meta.get("ram_id")),
                                 ("state", t.state, meta.get("state_id")),
                                 ("kernel", t.kernel_head, meta.get("kernel_id"))):
        try:
            st = path.lstat()
        except OSError:
            return None, f"its {what} file {path} is gone"
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return None, f"its {what} file {path} is not a file of ours"
        if file_id(st) != recorded:
            return None, f"its {what} file {path} changed since it was made"
    return t, ""


def _lock(path: Path, how: int) -> int:
    """An fd holding flock `how` on path, which still is the file it locked (gc removes
    lock files while holding them)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, how)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    try:
        return _lock(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return None


def failed(store: Path, key: str) -> str:
    """Why making or restoring KEY failed before ("" when it did not)."""
    try:
        with (store / f"{key}.failed").open("rb") as f:
            return f.read(500).decode(errors="replace").strip() or "no reason recorded"
    except OSError:
        return ""


def mark_failed(store: Path, key: str, reason: str) -> None:
    with contextlib.suppress(OSError):
        (store / f"{key}.failed").write_text(reason[:500] + "\n")


@contextlib.contextmanager
def use(store: Path, key: str, make: Callable[[Path], None]) -> Iterator[Template]:
    """The template KEY, made first by make(store/KEY) when there is none, for the with
    block (shared lock: `rkt gc` leaves it alone meanwhile). Unavailable: it failed
    before, it is broken (then removed), or it could not be made (marked failed)."""
    store.mkdir(parents=True, exist_ok=True)
    lock = store / f"{key}.lock"
    fd = _lock(lock, fcntl.LOCK_SH)
    try:
        t, why = check(store, key)
        if t is None:  # make it (or remove it) alone, then use it as the others do
            os.close(fd)
            fd = _lock(lock, fcntl.LOCK_EX)
            t = _made(store, key, make)
            os.close(fd)
            fd = _lock(lock, fcntl.LOCK_SH)
            t, why = check(store, key)
            if t is None:
                raise Unavailable(f"template {key} went away ({why})")
        elif failed(store, key):
            raise Unavailable(f"template {key} failed before ({failed(store, key)}); "
                              "`rkt gc` lets it be made again")
        with contextlib.suppress(OSError):
            os.utime(t.folder / META)  # its last use, for gc's grace period
        yield t
    finally:
        os.close(fd)


def _made(store: Path, key: str, make: Callable[[Path], None]) -> Template:
    """Under KEY's exclusive lock: KEY, as another process may have made it meanwhile,
    else made now; Unavailable when it failed before, is broken, or cannot be made."""
    reason = failed(store, key)
    if reason:
        raise Unavailable(f"template {key} failed before ({reason}); "
                          "`rkt gc` lets it be made again")
    t, why = check(store, key)
    if t is not None:
        return t
    if (store / key).exists():
        remove(store, key)
        raise Unavailable(f"template {key} is broken: {why}; removed it (the next pod "
                          "makes a new one)")
    try:
        make(store / key)
    except Unavailable as e:
        mark_failed(store, key, str(e))
        raise
    t, why = check(store, key)
    if t is None:
        mark_failed(store, key, f"made, but {why}")
        raise Unavailable(f"template {key} was made but {why}")
    return t


def remove(store: Path, key: str) -> None:
    """Remove template KEY (its folder and RAM file); the caller holds its lock."""
    folder = store / key
    ram = read_meta(folder).get("ram")
    if isinstance(ram, str) and ram.endswith(".ram"):
        remove_ram(Path(ram))
    shutil.rmtree(folder, ignore_errors=True)
    sweep_ram(RAM_ROOT)  # its RAM file, if meta.json no longer named it
    sweep_ram(store)


def remove_ram(ram: Path) -> None:
    for p in (ram, ram.with_suffix(".owner")):
        with contextlib.suppress(OSError):
            p.unlink()


def gc(store: Path, grace: float, now: float | None = None) -> list[str]:
    """`rkt gc`: remove what no pod can use any more (see the module's doc); the keys
    of the templates removed."""
    now = time.time() if now is None else now
    removed: list[str] = []
    entries = sorted(store.iterdir()) if store.is_dir() else []
    for entry in entries:
        name = entry.name
        if name.endswith(".failed"):
            with contextlib.suppress(OSError):
                entry.unlink()
        elif name.startswith(BUILD_PREFIX):
            _gc_build(store, entry)
        elif entry.is_dir() and not entry.is_symlink():
            why = _stale(store, name, grace, now)
            fd = _try_lock(store / f"{name}.lock") if why else None
            if fd is not None:
                try:
                    remove(store, name)
                    log.debug(f"kvm: removed VM template {name}: {why}")
                    removed.append(name)
                finally:
                    os.close(fd)
    for entry in entries:  # the locks of templates that are gone
        if entry.name.endswith(".lock") and not (store / entry.name[:-5]).exists():
            fd = _try_lock(entry)
            if fd is not None:
                with contextlib.suppress(OSError):
                    entry.unlink()
                os.close(fd)
    sweep_ram(RAM_ROOT)
    sweep_ram(store)
    return removed


def _stale(store: Path, key: str, grace: float, now: float) -> str:
    """Why gc should remove template KEY ("" to keep it)."""
    t, why = check(store, key)
    if t is None:
        return f"broken ({why})"
    try:
        idle = now - (t.folder / META).stat().st_mtime
    except OSError:
        return "gone"
    if idle > grace:
        return f"unused for {idle:.0f}s"
    files = read_meta(t.folder).get("qemu_files")
    for entry in files if isinstance(files, list) else []:
        if isinstance(entry, list) and len(entry) == 3 and str(entry[0]).startswith("/"):
            try:
                st = os.stat(str(entry[0]))
                changed = [st.st_size, st.st_mtime_ns] != entry[1:]
            except OSError:
                changed = True
            if changed:
                return f"{entry[0]} changed since it was made"
    return ""


def _gc_build(store: Path, build: Path) -> None:
    """A build folder whose builder is gone (its key's lock is free): kill its QEMU,
    remove it and its RAM file."""
    key = build.name[len(BUILD_PREFIX):].split("-", 1)[0]
    fd = _try_lock(store / f"{key}.lock")
    if fd is None:
        return  # being made right now
    try:
        token = build.name[len(BUILD_PREFIX):]
        with contextlib.suppress(OSError, ValueError):
            pid = int((build / "pid").read_text().strip())
            if token in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(build, ignore_errors=True)
    finally:
        os.close(fd)


def sweep_ram(root: Path) -> None:
    """Remove the RAM files in root that no template or build uses (their owner says
    which folders could); nothing in a folder another user could have written."""
    if not _private(root):
        return
    for owner in root.glob("*.owner"):
        ram = owner.with_suffix(".ram")
        try:
            folders = [Path(p) for p in owner.read_text().split("\n") if p]
        except OSError:
            continue
        used = any(f.name.startswith(BUILD_PREFIX) and f.is_dir() for f in folders) or any(
            read_meta(f).get("ram") == str(ram) for f in folders)
        if not used:
            remove_ram(ram)
