"""The runtime's state: one folder per container under `--root` (runc: /run/runc).

    ROOT/ID/state.json   what `create` recorded (State), replaced atomically
    ROOT/ID/exec.fifo    exists while the container is `created`: `start` reads it
    ROOT/ID/lock         flock serializing create/start/kill/delete of one container
    ROOT/ID/pod/         the pod folder the kvm stage1 runs (stage1/rootfs, kvm/, logs/)

The status is computed, never stored: `creating` until create recorded the pid,
`stopped` once that process is gone (or a zombie, or the pid was reused: its start
time is recorded), `created` while exec.fifo exists, else `running`.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyrkt.errors import NotFound, RktError
from pyrkt.record import asdict, field, record

DEFAULT_ROOT = Path("/run/pyrkt-runtime")
OCI_VERSION = "1.0.2"
_ID = re.compile(r"[\w+.-]+", re.ASCII)
STATE = "state.json"
FIFO = "exec.fifo"
LOCK = "lock"
POD = "pod"
APP = "app"  # the one app of a container's pod


class Status(enum.StrEnum):
    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"


@record
class State:
    id: str
    bundle: str
    rootfs: str
    created: str  # RFC 3339 with nanoseconds, UTC
    pid: int = 0
    pid_start: int = 0  # the process's start time (/proc/PID/stat field 22)
    started: bool = False
    sandbox: bool = False
    annotations: dict[str, str] = field(default_factory=dict)
    netns: str = ""
    taps: tuple[tuple[str, str], ...] = ()  # (tap, the netns interface it mirrors)


class AlreadyExists(RktError):
    pass


def pod_uuid(pod: Path) -> str:
    """The name the kvm stage1 gives a container's pod (its cgroups under pyrkt/): unique
    per state folder, so the same id under two roots (two containerd namespaces) never
    shares one."""
    import hashlib

    return "oci-" + hashlib.sha256(str(pod.absolute()).encode()).hexdigest()[:24]


def check_id(cid: str) -> str:
    if not cid or not _ID.fullmatch(cid) or cid in (".", ".."):
        raise RktError(f"invalid container id {cid!r}", "letters, digits and + - . _ only")
    return cid


def now_rfc3339() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def write_pid_file(path: Path, pid: int) -> None:
    """--pid-file, replaced atomically (the caller may read it at any time)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(str(pid))
    os.replace(tmp, path)


def proc_start(pid: int) -> tuple[int, str] | None:
    """(start time, state letter) of a live pid, None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            rest = f.read(4096).rsplit(b") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    try:
        return int(rest[19]), rest[0].decode()
    except (IndexError, ValueError):
        return None


def alive(pid: int, start: int) -> bool:
    """The recorded process is still running (not a zombie, not a reused pid)."""
    if pid <= 0:
        return False
    info = proc_start(pid)
    return info is not None and info[1] not in ("Z", "X") and (not start or info[0] == start)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root

    def dir(self, cid: str) -> Path:
        return self.root / check_id(cid)

    def pod(self, cid: str) -> Path:
        return self.dir(cid) / POD

    def make(self, cid: str) -> Path:
        """The container's new folder; AlreadyExists if the id is taken."""
        d = self.dir(cid)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            raise AlreadyExists("container with given ID already exists") from None
        return d

    def exists(self, cid: str) -> bool:
        return (self.dir(cid) / STATE).exists() or self.dir(cid).is_dir()

    def load(self, cid: str) -> State:
        f = self.dir(cid) / STATE
        try:
            data: dict[str, Any] = json.loads(f.read_text())
        except FileNotFoundError:
            raise NotFound("container does not exist") from None
        except (OSError, ValueError) as e:
            raise RktError(f"container {cid}: unreadable state: {e}") from e
        data["taps"] = tuple(tuple(t) for t in data.get("taps", ()))
        return State(**data)

    def save(self, st: State) -> None:
        d = self.dir(st.id)
        tmp = d / f".{STATE}.{os.getpid()}"
        tmp.write_text(json.dumps(asdict(st)))
        os.replace(tmp, d / STATE)

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / STATE).exists())

    @contextlib.contextmanager
    def locked(self, cid: str) -> Iterator[None]:
        fd = os.open(self.dir(cid) / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def status(self, st: State) -> Status:
        if st.pid <= 0:
            return Status.CREATING
        if not alive(st.pid, st.pid_start):
            return Status.STOPPED
        if not st.started and (self.dir(st.id) / FIFO).exists():
            return Status.CREATED
        return Status.RUNNING

    def oci_state(self, st: State) -> dict[str, Any]:
        """The OCI runtime spec's state (runtime.md "State"), as runc prints it."""
        status = self.status(st)
        out: dict[str, Any] = {
            "ociVersion": OCI_VERSION,
            "id": st.id,
            "pid": st.pid if status in (Status.CREATED, Status.RUNNING) else 0,
            "status": status.value,
            "bundle": st.bundle,
            "rootfs": st.rootfs,
            "created": st.created,
            "owner": "",
        }
        if st.annotations:
            out["annotations"] = st.annotations
        return out
