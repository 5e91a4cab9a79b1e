"""cgroups v1, v2 and hybrid, without systemd: one group per pod, one per app.

Layout under every hierarchy this module uses: `<mount>/pyrkt/<uuid>/<app>`. The pod's
init stays where it was started: it is PID 1 of the pod's PID namespace, so its death
takes every process of the pod with it. Limits go where the controller is: v1
`memory`/`cpu` hierarchies when mounted (this machine), else the v2 hierarchy if it
offers them. Everything is
plain file I/O on cgroupfs; errors are OSError naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from pathlib import Path

from pyrkt.record import field, record

ROOT_NAME = "pyrkt"
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Hierarchies a pod gets groups in: limits (memory, cpu) and process tracking (pids).
V1_CONTROLLERS = ("memory", "cpu", "pids")
V2_CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000


@record
class Layout:
    """Where the hierarchies are: v1 controller -> mount point, and the v2 mount."""

    v1: dict[str, Path] = field(default_factory=dict)
    v2: Path | None = None
    v2_controllers: frozenset[str] = frozenset()

    @property
    def mode(self) -> str:
        if self.v1 and self.v2:
            return "hybrid"
        return "v1" if self.v1 else "v2"

    def hierarchies(self) -> list[Path]:
        """Distinct mount points this module creates groups in: the v1 ones, or the v2
        one when there is no v1 hierarchy (in hybrid mode the v2 one offers nothing)."""
        out: list[Path] = []
        for c in V1_CONTROLLERS:
            p = self.v1.get(c)
            if p is not None and p not in out:
                out.append(p)
        if self.v2 is not None and (not out or self.v2_controllers & set(V2_CONTROLLERS)):
            out.append(self.v2)
        return out


def detect(mountinfo: str = "/proc/self/mountinfo") -> Layout:
    v1: dict[str, Path] = {}
    v2: Path | None = None
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            rfields = right.split()
            if len(fields) < 5 or len(rfields) < 3:
                continue
            fstype, mp = rfields[0], Path(fields[4])
            if fstype == "cgroup2" and v2 is None:
                v2 = mp
            elif fstype == "cgroup":
                for opt in rfields[2].split(","):
                    if opt in V1_CONTROLLERS:
                        v1.setdefault(opt, mp)
    ctrls: frozenset[str] = frozenset()
    if v2 is not None:
        try:
            ctrls = frozenset((v2 / "cgroup.controllers").read_text().split())
        except OSError:
            ctrls = frozenset()
    return Layout(v1=v1, v2=v2, v2_controllers=ctrls)


@record
class Limits:
    """An app's resource limits (None: unlimited)."""

    memory: int | None = None  # bytes
    cpu_milli: int | None = None  # millicores
    cpu_shares: int | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.memory, self.cpu_milli, self.cpu_shares))


def _write(path: Path, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise OSError(e.errno, f"write {value!r} to {path}: {e.strerror}") from e


def _single_threaded() -> bool:
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares (2..262144) to v2 cpu.weight (1..10000), as runc converts."""
    shares = max(2, min(shares, 262144))
    return 1 + ((shares - 2) * 9999) // 262142


class PodCgroups:
    """The cgroups of one pod."""

    def __init__(self, uuid: str, layout: Layout | None = None) -> None:
        self.uuid = uuid
        self.layout = layout if layout is not None else detect()

    def pod_dirs(self) -> list[Path]:
        return [h / ROOT_NAME / self.uuid for h in self.layout.hierarchies()]

    def dirs(self, leaf: str) -> list[Path]:
        return [d / leaf for d in self.pod_dirs()]

    def _enable_v2(self) -> None:
        v2 = self.layout.v2
        wanted = [c for c in V2_CONTROLLERS if c in self.layout.v2_controllers]
        if v2 is None or not wanted:
            return
        spec = " ".join("+" + c for c in wanted)
        for d in (v2, v2 / ROOT_NAME, v2 / ROOT_NAME / self.uuid):
            d.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):
                _write(d / "cgroup.subtree_control", spec)

    def needed(self, limits: Limits) -> list[Path]:
        """Hierarchies a leaf with these limits needs: v2; or on v1 `pids` (to track the
        processes), `memory` and `cpu` only for a limit. Each v1 hierarchy joined costs
        milliseconds (an RCU grace period per cgroup.procs write)."""
        v1 = self.layout.v1
        if not v1:
            return self.layout.hierarchies()
        out: list[Path] = []
        track = v1.get("pids") or v1.get("memory") or v1.get("cpu")
        wanted = [track, v1.get("memory") if limits.memory is not None else None,
                  v1.get("cpu") if (limits.cpu_milli, limits.cpu_shares) != (None, None)
                  else None]
        for h in wanted:
            if h is not None and h not in out:
                out.append(h)
        if self.layout.v2 is not None and self.layout.v2 in self.layout.hierarchies():
            out.append(self.layout.v2)
        return out

    def create(self, leaf: str, limits: Limits = Limits()) -> None:
        """Create the leaf group where it is needed and write its limits."""
        self._enable_v2()
        for h in self.needed(limits):
            (h / ROOT_NAME / self.uuid / leaf).mkdir(parents=True, exist_ok=True)
        if limits:
            self._set_limits(leaf, limits)

    def _set_limits(self, leaf: str, lim: Limits) -> None:
        v1, v2 = self.layout.v1, self.layout.v2
        v2c = self.layout.v2_controllers
        if lim.memory is not None:
            if "memory" in v1:
                _write(v1["memory"] / ROOT_NAME / self.uuid / leaf / "memory.limit_in_bytes",
                       str(lim.memory))
            elif v2 is not None and "memory" in v2c:
                _write(v2 / ROOT_NAME / self.uuid / leaf / "memory.max", str(lim.memory))
        if lim.cpu_milli is not None:
            quota = max(1000, lim.cpu_milli * CPU_PERIOD_US // 1000)
            if "cpu" in v1:
                d = v1["cpu"] / ROOT_NAME / self.uuid / leaf
                _write(d / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                _write(d / "cpu.cfs_quota_us", str(quota))
            elif v2 is not None and "cpu" in v2c:
                _write(v2 / ROOT_NAME / self.uuid / leaf / "cpu.max", f"{quota} {CPU_PERIOD_US}")
        if lim.cpu_shares is not None:
            if "cpu" in v1:
                _write(v1["cpu"] / ROOT_NAME / self.uuid / leaf / "cpu.shares",
                       str(lim.cpu_shares))
            elif v2 is not None and "cpu" in v2c:
                _write(v2 / ROOT_NAME / self.uuid / leaf / "cpu.weight",
                       str(shares_to_weight(lim.cpu_shares)))

    def join(self, leaf: str, pid: int = 0) -> None:
        """Move pid (0: the caller) into the leaf group of each hierarchy it exists in.

        A single-threaded caller joins through v1's `tasks` (its one thread is the whole
        process): a `cgroup.procs` write takes the kernel's threadgroup lock, which
        costs an RCU grace period (8-30 ms measured here) on every `rkt run`.
        """
        procs = "tasks" if pid == 0 and _single_threaded() else "cgroup.procs"
        for d in self.dirs(leaf):
            if d.is_dir():
                f = d / procs
                _write(f if procs == "cgroup.procs" or f.exists() else d / "cgroup.procs",
                       str(pid))

    def join_files(self, leaf: str) -> list[Path]:
        """The files a single-threaded process (a launcher about to exec) writes "0" to,
        one per hierarchy the leaf exists in, to join the leaf itself: v1 `tasks` (no
        threadgroup lock, see `join`), v2 `cgroup.procs`."""
        out = []
        for d in self.dirs(leaf):
            if d.is_dir():
                out.append(d / "tasks" if (d / "tasks").exists() else d / "cgroup.procs")
        return out

    def leaf_and_pod_dirs(self, leaf: str) -> list[Path]:
        """The leaf's groups, then the pod's: the order to remove them once empty."""
        return [*self.dirs(leaf), *self.pod_dirs()]

    def views(self, leaf: str) -> list[tuple[str, Path]]:
        """(path relative to /sys/fs/cgroup, group dir) to show an app its own groups."""
        out: list[tuple[str, Path]] = []
        for h in self.layout.hierarchies():
            try:
                rel = str(h.relative_to(CGROUP_ROOT))
            except ValueError:
                continue
            group = h / ROOT_NAME / self.uuid / leaf
            if group.is_dir():
                out.append(("" if rel == "." else rel, group))
        return out

    def pids(self) -> set[int]:
        """Processes in the pod's groups (the pod group and its leaves)."""
        found: set[int] = set()
        for pod in self.pod_dirs():
            try:
                leaves = [e.path for e in os.scandir(pod) if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            for d in (str(pod), *leaves):
                with contextlib.suppress(OSError, ValueError), \
                        open(os.path.join(d, "cgroup.procs")) as f:
                    found |= {int(x) for x in f.read().split()}
        return found

    def destroy(self, timeout: float = 5.0) -> None:
        """Kill whatever is left in the pod's groups, then remove them (deepest first)."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.pids()
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        for pod in self.pod_dirs():
            if not pod.is_dir():
                continue
            for d in sorted((p for p in pod.iterdir() if p.is_dir()), reverse=True):
                _rmdir(d, deadline)
            _rmdir(pod, deadline)


def _rmdir(d: Path, deadline: float) -> None:
    while True:
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:
            # EBUSY while the last killed task is still exiting.
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise OSError(e.errno, f"rmdir {d}: {e.strerror}") from e
            time.sleep(0.01)
