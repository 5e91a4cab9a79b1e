"""A bundle's `config.json` (the OCI runtime spec) as typed records.

Only the fields the runtime acts on are read; each is type-checked and a wrong shape
is refused naming its key path (`process.user.uid: expected an integer`). What the
runtime does with each field (honoured, refused, ignored) is decided in `plan.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pyrkt.errors import RktError
from pyrkt.record import field, record

MAX_CONFIG_BYTES = 4 << 20


class SpecError(RktError):
    """config.json (or an exec process.json) cannot be used."""


@record
class User:
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    umask: int | None = None


@record
class Rlimit:
    type: str  # "RLIMIT_NOFILE"
    soft: int
    hard: int


@record
class Process:
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    terminal: bool = False
    user: User = field(default_factory=User)
    # each set, by name (bounding, effective, permitted, inheritable, ambient)
    capabilities: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    oom_score_adj: int | None = None


@record
class Mount:
    destination: str
    type: str = ""
    source: str = ""
    options: tuple[str, ...] = ()

    @property
    def is_bind(self) -> bool:
        return self.type == "bind" or "bind" in self.options or "rbind" in self.options

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


@record
class Namespace:
    type: str
    path: str = ""


@record
class Resources:
    memory_limit: int | None = None  # bytes
    cpu_quota: int | None = None  # microseconds per period
    cpu_period: int | None = None
    cpu_shares: int | None = None


@record
class Spec:
    oci_version: str
    root_path: Path  # absolute
    root_readonly: bool
    process: Process
    hostname: str = ""
    mounts: tuple[Mount, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    namespaces: tuple[Namespace, ...] = ()
    resources: Resources = field(default_factory=Resources)
    uid_mappings: bool = False
    hooks: tuple[str, ...] = ()  # names of the hook kinds present
    ignored: tuple[str, ...] = ()  # keys present that a VM does not apply

    def namespace(self, kind: str) -> Namespace | None:
        return next((n for n in self.namespaces if n.type == kind), None)


# ---- typed getters that name the key path -------------------------------------------


def _obj(v: object, where: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise SpecError(f"{where}: expected an object")
    return v


def _str(v: object, where: str, default: str = "") -> str:
    if v is None:
        return default
    if not isinstance(v, str):
        raise SpecError(f"{where}: expected a string")
    return v


def _int(v: object, where: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(f"{where}: expected an integer")
    return v


def _bool(v: object, where: str) -> bool:
    if v is None:
        return False
    if not isinstance(v, bool):
        raise SpecError(f"{where}: expected true or false")
    return v


def _strs(v: object, where: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise SpecError(f"{where}: expected a list of strings")
    return tuple(v)


def _list(v: object, where: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise SpecError(f"{where}: expected a list")
    return v


def parse_process(d: dict[str, Any], where: str = "process") -> Process:
    args = _strs(d.get("args"), f"{where}.args")
    if not args:
        raise SpecError(f"{where}.args: the process needs a command", "args must not be empty")
    u = _obj(d.get("user"), f"{where}.user")
    gids = _list(u.get("additionalGids"), f"{where}.user.additionalGids")
    user = User(
        uid=_int(u.get("uid"), f"{where}.user.uid") or 0,
        gid=_int(u.get("gid"), f"{where}.user.gid") or 0,
        additional_gids=tuple(
            _int(g, f"{where}.user.additionalGids[{i}]") or 0 for i, g in enumerate(gids)
        ),
        umask=_int(u.get("umask"), f"{where}.user.umask"),
    )
    caps = _obj(d.get("capabilities"), f"{where}.capabilities")
    rlimits = []
    for i, r in enumerate(_list(d.get("rlimits"), f"{where}.rlimits")):
        w = f"{where}.rlimits[{i}]"
        r = _obj(r, w)
        rlimits.append(Rlimit(
            type=_str(r.get("type"), f"{w}.type"),
            soft=_int(r.get("soft"), f"{w}.soft") or 0,
            hard=_int(r.get("hard"), f"{w}.hard") or 0,
        ))
    return Process(
        args=args,
        env=_strs(d.get("env"), f"{where}.env"),
        cwd=_str(d.get("cwd"), f"{where}.cwd", "/") or "/",
        terminal=_bool(d.get("terminal"), f"{where}.terminal"),
        user=user,
        capabilities={k: _strs(v, f"{where}.capabilities.{k}") for k, v in caps.items()},
        rlimits=tuple(rlimits),
        no_new_privileges=_bool(d.get("noNewPrivileges"), f"{where}.noNewPrivileges"),
        oom_score_adj=_int(d.get("oomScoreAdj"), f"{where}.oomScoreAdj"),
    )


def _resources(d: dict[str, Any]) -> Resources:
    mem = _obj(d.get("memory"), "linux.resources.memory")
    cpu = _obj(d.get("cpu"), "linux.resources.cpu")
    limit = _int(mem.get("limit"), "linux.resources.memory.limit")
    return Resources(
        memory_limit=limit if limit is not None and limit > 0 else None,
        cpu_quota=_int(cpu.get("quota"), "linux.resources.cpu.quota"),
        cpu_period=_int(cpu.get("period"), "linux.resources.cpu.period"),
        cpu_shares=_int(cpu.get("shares"), "linux.resources.cpu.shares"),
    )


# Keys of `linux` that only make sense for a container sharing the host kernel: the
# guest kernel applies its own (docs/oci-runtime.md, "What is honoured").
IGNORED_LINUX_KEYS = ("seccomp", "sysctl", "maskedPaths", "readonlyPaths", "devices",
                      "cgroupsPath", "mountLabel", "rootfsPropagation", "intelRdt",
                      "personality")


def parse_spec(data: object, bundle: Path) -> Spec:
    d = _obj(data, "config.json")
    root = _obj(d.get("root"), "root")
    path = _str(root.get("path"), "root.path")
    if not path:
        raise SpecError("root.path: the bundle names no root filesystem")
    root_path = Path(path) if path.startswith("/") else bundle / path
    process = parse_process(_obj(d.get("process"), "process"))
    mounts = []
    for i, m in enumerate(_list(d.get("mounts"), "mounts")):
        w = f"mounts[{i}]"
        m = _obj(m, w)
        dest = _str(m.get("destination"), f"{w}.destination")
        if not dest.startswith("/"):
            raise SpecError(f"{w}.destination: {dest!r} is not an absolute path")
        mounts.append(Mount(dest, _str(m.get("type"), f"{w}.type"),
                            _str(m.get("source"), f"{w}.source"),
                            _strs(m.get("options"), f"{w}.options")))
    ann = _obj(d.get("annotations"), "annotations")
    linux = _obj(d.get("linux"), "linux")
    nss = []
    for i, n in enumerate(_list(linux.get("namespaces"), "linux.namespaces")):
        n = _obj(n, f"linux.namespaces[{i}]")
        nss.append(Namespace(_str(n.get("type"), f"linux.namespaces[{i}].type"),
                             _str(n.get("path"), f"linux.namespaces[{i}].path")))
    hooks = _obj(d.get("hooks"), "hooks")
    ignored = [f"linux.{k}" for k in IGNORED_LINUX_KEYS if linux.get(k)]
    ignored += [f"process.{k}" for k in ("apparmorProfile", "selinuxLabel") if
                _obj(d.get("process"), "process").get(k)]
    return Spec(
        oci_version=_str(d.get("ociVersion"), "ociVersion"),
        root_path=root_path,
        root_readonly=_bool(root.get("readonly"), "root.readonly"),
        process=process,
        hostname=_str(d.get("hostname"), "hostname"),
        mounts=tuple(mounts),
        annotations={k: _str(v, f"annotations.{k}") for k, v in ann.items()},
        namespaces=tuple(nss),
        resources=_resources(_obj(linux.get("resources"), "linux.resources")),
        uid_mappings=bool(linux.get("uidMappings") or linux.get("gidMappings")),
        hooks=tuple(k for k, v in hooks.items() if v),
        ignored=tuple(ignored),
    )


def read_bounded(path: Path, what: str, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """The content of a file of at most limit bytes (SpecError otherwise)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as e:
        raise SpecError(f"{what}: cannot read {path}: {e.strerror}") from e
    if len(raw) > limit:
        raise SpecError(f"{what}: {path} is larger than {limit} bytes")
    return raw


def read_json(path: Path, what: str) -> object:
    """A JSON file of at most MAX_CONFIG_BYTES."""
    raw = read_bounded(path, what)
    try:
        return json.loads(raw)
    except ValueError as e:
        raise SpecError(f"{what} {path} is not JSON: {e}") from e


def load_bundle(bundle: Path) -> Spec:
    """The bundle's config.json, parsed; the root filesystem checked to be a folder."""
    spec = parse_spec(read_json(bundle / "config.json", "config"), bundle)
    if not spec.root_path.is_dir():
        raise SpecError(f"root.path: {spec.root_path} is not a folder")
    return spec
