"""Pod folders and states, as rkt kept them: a folder per state plus an flock.

    DIR/pods/embryo/<uuid>          being created
    DIR/pods/prepare/<uuid>         locked: preparing; unlocked: aborted prepare
    DIR/pods/prepared/<uuid>        ready for run-prepared
    DIR/pods/run/<uuid>             locked: running (the stage1 holds the lock); else exited
    DIR/pods/exited-garbage/<uuid>  exited and marked by gc (locked: being deleted)
    DIR/pods/garbage/<uuid>         aborted/prepared pods marked for deletion

The lock is an flock on the pod folder itself, so it survives the renames that move a pod
from state to state; each rename is followed by an fsync of the new parent (but for two
transient states on `rkt run`'s path: see `Pod.move`). The running
stage1 inherits the locked fd (RKT_LOCK_FD): when it dies, however it dies, the pod is
exited.
"""

from __future__ import annotations

import enum
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pyrkt import datadir
from pyrkt.errors import PERMISSION_HINT, Ambiguous, NotFound, RktError, go_quote
from pyrkt.linux.files import fsync_dir, try_flock


class Folder(enum.StrEnum):
    EMBRYO = "embryo"
    PREPARE = "prepare"
    PREPARED = "prepared"
    RUN = "run"
    EXITED_GARBAGE = "exited-garbage"
    GARBAGE = "garbage"


class State(enum.StrEnum):
    """A pod's state as `rkt list` and `rkt status` spell it."""

    EMBRYO = "embryo"
    PREPARING = "preparing"
    ABORTED_PREPARE = "aborted prepare"
    PREPARED = "prepared"
    RUNNING = "running"
    DELETING = "deleting"
    EXITED = "exited"
    EXITED_GARBAGE = "exited garbage"
    GARBAGE = "garbage"


def pods_root(data_dir: Path) -> Path:
    return data_dir.absolute() / "pods"


def _ensure_layout(root: Path) -> None:
    datadir.make(root.parent, *(f"pods/{f.value}" for f in Folder))


class Pod:
    """One pod folder. `fd` is an open (possibly locked) descriptor of the folder."""

    def __init__(self, root: Path, uuid: str, folder: Folder) -> None:
        self.root = root
        self.uuid = uuid
        self.folder = folder
        self.fd: int | None = None
        self.locked = False

    def __repr__(self) -> str:
        return f"Pod({self.uuid}, {self.folder})"

    @property
    def path(self) -> Path:
        return self.root / self.folder / self.uuid

    # ---- locking --------------------------------------------------------------------

    def open(self) -> int:
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                self.refresh()
                self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self.fd

    def try_lock(self) -> bool:
        """Take the exclusive lock without waiting; False when another process holds it."""
        if not try_flock(self.open()):
            return False
        self.locked = True
        self.refresh()  # it may have moved while we waited for it
        return True

    def lock(self) -> None:
        if not self.try_lock():
            raise RktError(f"pod {self.uuid} is in use (locked by another process)")

    def wait_lock(self) -> None:
        fcntl.flock(self.open(), fcntl.LOCK_EX)
        self.locked = True
        self.refresh()

    def unlock(self) -> None:
        if self.fd is not None and self.locked:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.locked = False

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.fd = None
        self.locked = False

    def is_locked_by_other(self) -> bool:
        """True when some other process holds the pod's lock (e.g. a running stage1)."""
        if self.locked:
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            return not try_flock(fd)
        finally:
            os.close(fd)

    # ---- states ---------------------------------------------------------------------

    def state(self) -> State:
        f = self.folder
        if f is Folder.EMBRYO:
            return State.EMBRYO
        if f is Folder.PREPARE:
            return State.PREPARING if self.is_locked_by_other() else State.ABORTED_PREPARE
        if f is Folder.PREPARED:
            return State.PREPARED
        if f is Folder.RUN:
            return State.RUNNING if self.is_locked_by_other() else State.EXITED
        if f is Folder.EXITED_GARBAGE:
            return State.EXITED_GARBAGE
        return State.DELETING if self.is_locked_by_other() else State.GARBAGE

    def move(self, to: Folder, *, durable: bool = True) -> None:
        """Rename the pod folder into another state folder, durably unless told not to.

        `durable=False` is for a transient state that a later durable move commits
        anyway (an fsync costs milliseconds on `rkt run`'s path): a crash before that
        leaves the pod in the earlier state, which gc treats alike.
        """
        src, dst = self.path, self.root / to / self.uuid
        try:
            os.rename(src, dst)
        except OSError as e:
            raise RktError(f"cannot move pod {self.uuid} to {to}: {e.strerror}") from e
        if durable:
            fsync_dir(dst.parent)  # commits the rename (both folders on one filesystem)
        self.folder = to

    def refresh(self) -> None:
        """Find the folder the pod is in now (another process may have moved it)."""
        if self.path.exists():
            return
        for f in Folder:
            if (self.root / f / self.uuid).exists():
                self.folder = f
                return
        raise NotFound(f"pod {self.uuid} no longer exists")

    def lock_fd_for_child(self) -> int:
        """The locked fd, made inheritable, for the stage1 to hold."""
        fd = self.open()
        if not self.locked:
            raise RktError(f"pod {self.uuid} is not locked")
        os.set_inheritable(fd, True)
        return fd


def new_uuid() -> str:
    """A random (version 4) UUID, as `str(uuid.uuid4())` gives it; without importing
    `uuid` (which imports `platform`: milliseconds on every `rkt run`)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def create(data_dir: Path) -> Pod:
    """A new pod: made in `embryo`, locked, then moved to `prepare`."""
    root = pods_root(data_dir)
    _ensure_layout(root)
    uuid = new_uuid()
    pod = Pod(root, uuid, Folder.EMBRYO)
    pod.path.mkdir(mode=0o750)
    datadir.private_folder(pod.path)  # its group (rkt's) stays; its setgid bit goes
    pod.lock()
    # not fsynced: an embryo and an unlocked `prepare` pod are both aborted, removed by gc
    pod.move(Folder.PREPARE, durable=False)
    return pod


def all_pods(data_dir: Path) -> Iterator[Pod]:
    root = pods_root(data_dir)
    for f in Folder:
        try:
            names = sorted(os.listdir(root / f))
        except FileNotFoundError:
            continue
        except PermissionError as e:
            raise RktError(f"cannot read the pods in {root}: permission denied",
                           PERMISSION_HINT) from e  # fmt: skip
        for name in names:
            yield Pod(root, name, f)


def lookup(data_dir: Path, prefix: str) -> Pod:
    """The pod whose UUID starts with `prefix` (rkt's unambiguous prefix rule), or rkt's
    errors: "UUID cannot be empty", `no matches found for "..."`, "ambiguous uuid, N
    matches"."""
    if not prefix:
        raise NotFound("UUID cannot be empty")
    p = prefix.lower()
    found: dict[str, Pod] = {}
    for pod in all_pods(data_dir):
        if pod.uuid.startswith(p):
            found.setdefault(pod.uuid, pod)
    if not found:
        raise NotFound(f"no matches found for {go_quote(p)}")
    if len(found) > 1:
        raise Ambiguous(f"ambiguous uuid, {len(found)} matches")
    return next(iter(found.values()))


def read_uuid_file(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as e:
        raise RktError(f"cannot read uuid file {path}: {e.strerror}") from e
