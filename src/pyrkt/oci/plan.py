"""config.json -> the PodPlan the kvm stage1 runs, by documented rules (pure).

One OCI container is one pod with one app (`APP`) in its own VM. The rules for what a
VM cannot apply as runc does are listed in docs/oci-runtime.md ("What is honoured");
each is one branch here: honoured, refused (`SpecError`, naming the key), or ignored
with a note the runtime writes to its log.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pyrkt.linux import beneath
from pyrkt.oci.spec import Mount, Process, Spec, SpecError, read_bounded
from pyrkt.oci.state import APP, pod_uuid
from pyrkt.record import record
from pyrkt.stage1 import contract
from pyrkt.stage1.plan import AppPlan, MountPlan, PodPlan, Rlimit, VolumeKind
from pyrkt.stage1.planner import normalize_cap, resolve_in_rootfs

# A process with no capabilities at all (script.cap_arg maps it to none, as it does an
# empty list).
NO_CAPS = ("none",)
MAX_ETC_FILE = 64 * 1024
# The largest single file a read-only bind gets a copy of (when no hard link can be made).
MAX_FILE_COPY = 16 * 1024 * 1024
# Where a single file bound into the container is staged (oci/filebind.py): in the pod
# folder, which the host owns and the guest never sees (it shares only folders under it).
FILES_DIR = "files"

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}  # fmt: skip
# Filesystems the guest gives every app itself (guest/script.py app_mounts).
GUEST_TYPES = {"proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2"}
GUEST_PLACES = {"/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue",
                "/sys/fs/cgroup", "/run"}
# Files bind-mounted over the app's /etc: the pod's /etc files (copied at create).
ETC_FILES = {"/etc/hosts": "hosts", "/etc/hostname": "hostname",
             "/etc/resolv.conf": "resolv.conf"}
# Single files that only inform the container; skipped with a note.
INFO_FILES = {"/run/.containerenv", "/dev/termination-log"}
# Annotations that mark a pod's infra ("pause") container.
SANDBOX_ANNOTATIONS = {"io.kubernetes.cri.container-type": "sandbox",
                       "io.kubernetes.cri-o.ContainerType": "sandbox"}


@record
class FileBind:
    """A bind of a single regular file, staged at create (oci/filebind.py) as `staged`:
    a hard link to the user's file, else (read-only only) a copy of it. The kvm runner
    shares it with the VM as it shares `rkt run`'s file volumes."""

    source: Path
    staged: Path
    read_only: bool
    where: str  # the spec's key, for messages


@record
class ContainerPlan:
    """What `create` sets up: the pod the VM runs, and what is around it."""

    pod: PodPlan
    netns: Path | None = None  # an existing network namespace whose interfaces the VM gets
    etc_files: tuple[tuple[str, str], ...] = ()
    terminal: bool = False
    sandbox: bool = False  # an infra container: no VM (docs: "Pods and sandboxes")
    empty_dirs: tuple[Path, ...] = ()  # folders to make for tmpfs mounts
    # namespace types the spec asks new ones of (no path): an infra container's process
    # makes them, since the pod's other containers join them through /proc/PID/ns/
    new_namespaces: tuple[str, ...] = ()
    file_binds: tuple[FileBind, ...] = ()  # single files to stage in the pod folder
    notes: tuple[str, ...] = ()  # what was ignored, for the runtime's log


def is_sandbox(spec: Spec) -> bool:
    return any(spec.annotations.get(k) == v for k, v in SANDBOX_ANNOTATIONS.items())


def env_pairs(env: tuple[str, ...], notes: list[str]) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for e in env:
        k, eq, v = e.partition("=")
        if not eq or not k:
            notes.append(f"process.env: {e!r} has no NAME=: skipped")
            continue
        out[k] = v
    return tuple(out.items())


def capabilities(p: Process) -> tuple[str, ...]:
    """The one set rkt-exec keeps (bounding = permitted = effective = inheritable, and
    ambient for a non-root user): the permitted set, else the bounding set."""
    caps = p.capabilities.get("permitted", p.capabilities.get("bounding", ()))
    names = tuple(dict.fromkeys(normalize_cap(c) for c in caps))
    return names or NO_CAPS


def rlimits(p: Process, where: str = "process") -> tuple[Rlimit, ...]:
    out = []
    for i, r in enumerate(p.rlimits):
        nr = RLIMITS.get(r.type)
        if nr is None:
            raise SpecError(f"{where}.rlimits[{i}].type: unknown rlimit {r.type!r}")
        if r.soft > r.hard:
            raise SpecError(f"{where}.rlimits[{i}]: soft limit above the hard limit")
        out.append(Rlimit(nr, r.soft, r.hard))
    return tuple(out)


def app_plan(p: Process, name: str, rootfs: Path, **kw: object) -> AppPlan:
    """The AppPlan running process p (the container's, or an exec's) in rootfs."""
    notes: list[str] = []
    return AppPlan(
        name=name,
        rootfs=rootfs,
        argv=p.args,
        env=env_pairs(p.env, notes),
        uid=p.user.uid,
        gid=p.user.gid,
        supplementary_gids=p.user.additional_gids,
        working_dir=p.cwd,
        capabilities=capabilities(p),
        no_new_privs=p.no_new_privileges,
        oom_score_adj=p.oom_score_adj,
        rlimits=rlimits(p),
        umask=p.user.umask,
        **kw,  # type: ignore[arg-type]
    )


def _cpu_milli(spec: Spec) -> int | None:
    q, per = spec.resources.cpu_quota, spec.resources.cpu_period
    if q is None or q <= 0:
        return None
    per = per if per and per > 0 else 100000
    return max(1, -(-q * 1000 // per))


@record
class _Mounts:
    plans: list[MountPlan]
    etc: list[tuple[str, str]]
    empty: list[Path]
    files: list[FileBind]


def _mounts(spec: Spec, pod_dir: Path, notes: list[str]) -> _Mounts:
    out = _Mounts([], [], [], [])
    plans = out.plans
    for i, m in enumerate(spec.mounts):
        where = f"mounts[{i}] ({m.destination})"
        dest = os.path.normpath(m.destination)
        if m.type in GUEST_TYPES or (m.type == "tmpfs" and dest in GUEST_PLACES) or (
            dest == "/dev/shm"
        ):
            if dest not in GUEST_PLACES:
                raise SpecError(f"{where}: a {m.type} file system at {dest} is not supported",
                                "the guest mounts its own at the usual places")
            continue  # the guest kernel's own
        name = f"v{len(plans)}"
        target = resolve_in_rootfs(spec.root_path, dest)
        if m.type == "tmpfs":
            d = pod_dir / "volumes" / name
            out.empty.append(d)
            notes.append(f"{where}: tmpfs as an empty folder of the container's state")
            plans.append(MountPlan(name, VolumeKind.EMPTY, d, target, read_only=m.read_only))
            continue
        if not m.is_bind:
            raise SpecError(f"{where}: mount type {m.type!r} is not supported",
                            "bind mounts of folders, tmpfs and the usual kernel file systems are")
        mp = _bind(m, dest, target, name, where, pod_dir, out, notes)
        if mp is not None:
            plans.append(mp)
    return out


def _bind(m: Mount, dest: str, target: str, name: str, where: str, pod_dir: Path,
          out: _Mounts, notes: list[str]) -> MountPlan | None:
    src = Path(m.source)
    try:
        st = os.stat(src)
    except OSError as e:
        raise SpecError(f"{where}: source {src}: {e.strerror}") from e
    if stat.S_ISDIR(st.st_mode):
        return MountPlan(name, VolumeKind.HOST, src, target, read_only=m.read_only,
                         recursive="rbind" in m.options or m.type == "bind")
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(f"{where}: {src} is {beneath.file_kind(st.st_mode)}, not a file "
                        "or a folder", "the VM can share regular files and folders only")
    if dest in ETC_FILES:
        out.etc.append((ETC_FILES[dest], read_bounded(src, where, MAX_ETC_FILE).decode(
            errors="replace")))
        return None
    if dest in INFO_FILES:
        notes.append(f"{where}: a single file, not shared with the VM: skipped")
        return None
    staged = pod_dir / FILES_DIR / name
    out.files.append(FileBind(src, staged, m.read_only, where))
    return MountPlan(name, VolumeKind.HOST, staged, target, read_only=m.read_only)



def container_plan(spec: Spec, cid: str, pod_dir: Path) -> ContainerPlan:
    """The plan for container cid whose pod folder is pod_dir."""
    notes = [f"{k}: not applied in a VM (the guest kernel has its own)" for k in spec.ignored]
    if spec.hooks:
        raise SpecError(f"hooks ({', '.join(spec.hooks)}) are not supported",
                        "rkt-runtime runs no OCI hooks")
    if spec.uid_mappings or spec.namespace("user") is not None:
        raise SpecError("linux.namespaces: user namespaces are not supported",
                        "the VM's guest kernel has users of its own")
    netns = None
    for ns in spec.namespaces:
        if ns.type == "network" and ns.path:
            netns = Path(ns.path)
        elif ns.path:
            notes.append(f"linux.namespaces: joining the {ns.type} namespace {ns.path} "
                         "is ignored: the VM has its own")
    rootfs = contract.app_rootfs(pod_dir, APP)
    mounts = _mounts(spec, pod_dir, notes)
    app = app_plan(
        spec.process, APP, rootfs,
        memory_limit=spec.resources.memory_limit,
        cpu_limit_milli=_cpu_milli(spec),
        cpu_shares=spec.resources.cpu_shares,
        readonly_rootfs=spec.root_readonly,
        mounts=tuple(mounts.plans),
    )
    pod = PodPlan(
        uuid=pod_uuid(pod_dir),
        hostname=(spec.hostname or cid)[:63],
        apps=(app,),
        interactive=spec.process.terminal,
        net="none",
        annotations=dict(spec.annotations),
    )
    return ContainerPlan(
        pod=pod, netns=netns, etc_files=tuple(mounts.etc), terminal=spec.process.terminal,
        sandbox=is_sandbox(spec), empty_dirs=tuple(mounts.empty), notes=tuple(notes),
        file_binds=tuple(mounts.files),
        new_namespaces=tuple(n.type for n in spec.namespaces if not n.path),
    )
