"""The appc pod manifest (`POD/pod`, schema 0.8.11), as frozen dataclasses.

`parse_pod_manifest(data)` rejects unknown keys naming their path
(`apps[0].app.exek`); `PodManifest.to_json()` writes what rkt wrote. `parse_app(data)`
reads an image manifest's `app` section (leniently: image manifests in the wild carry
extra keys).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping

from pyrkt.appc import validate as check
from pyrkt.appc.schema import (
    AC_VERSION,
    Isolator,
    JsonObject,
    ManifestError,
    MountPoint,
    NameValue,
    Port,
)
from pyrkt.record import field, record

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "AC_VERSION", "KV", "App", "ExposedPort", "ImageRef", "Isolator", "ManifestError",
    "Mount", "MountPoint", "PodManifest", "Port", "RuntimeApp", "SeccompFilter",
    "SeccompMode", "Volume", "app_dict", "load_pod_manifest", "oom_score_adj", "parse_app",
    "parse_pod_manifest", "parse_quantity", "seccomp_filter",
]  # fmt: skip

KV = NameValue  # a name/value pair (labels, annotations, environment)

ISO_MEMORY = "resource/memory"
ISO_CPU = "resource/cpu"
ISO_CPU_SHARES = "os/linux/cpu-shares"
ISO_CAPS_RETAIN = "os/linux/capabilities-retain-set"
ISO_CAPS_REMOVE = "os/linux/capabilities-remove-set"
ISO_NO_NEW_PRIVS = "os/linux/no-new-privileges"
ISO_SECCOMP_RETAIN = "os/linux/seccomp-retain-set"
ISO_SECCOMP_REMOVE = "os/linux/seccomp-remove-set"
ISO_OOM_SCORE_ADJ = "os/linux/oom-score-adj"


@record
class App:
    """The app of an image or of a runtime app: what runs and how."""

    exec: tuple[str, ...] = ()
    user: str = "0"
    group: str = "0"
    supplementary_gids: tuple[int, ...] = ()
    working_directory: str = ""
    environment: tuple[KV, ...] = ()
    isolators: tuple[Isolator, ...] = ()
    mount_points: tuple[MountPoint, ...] = ()
    ports: tuple[Port, ...] = ()
    event_handlers: tuple[Any, ...] = ()

    def isolator(self, name: str) -> Any | None:
        for iso in self.isolators:
            if iso.name == name:
                return iso.value
        return None


@record
class ImageRef:
    """The image a runtime app runs: name, ID and labels."""

    name: str
    id: str
    labels: tuple[KV, ...] = ()


@record
class Mount:
    """A runtime app's mount: a pod volume at a path (or mount point name)."""

    volume: str
    path: str


@record
class RuntimeApp:
    """One app of a pod: its name, image, app and mounts."""

    name: str
    image: ImageRef
    app: App | None = None
    read_only_rootfs: bool = False
    mounts: tuple[Mount, ...] = ()
    annotations: tuple[KV, ...] = ()


@record
class Volume:
    """A pod volume (`host` or `empty`)."""

    name: str
    kind: str  # "host" | "empty"
    source: str = ""
    read_only: bool | None = None
    recursive: bool | None = None
    mode: str = ""
    uid: int | None = None
    gid: int | None = None


@record
class ExposedPort:
    """A pod port forwarded from the host."""

    name: str
    host_port: int
    host_ip: str = ""


@record
class PodManifest:
    """The appc pod manifest."""

    apps: tuple[RuntimeApp, ...]
    volumes: tuple[Volume, ...] = ()
    isolators: tuple[Isolator, ...] = ()
    annotations: tuple[KV, ...] = ()
    ports: tuple[ExposedPort, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # userAnnotations/userLabels

    def app(self, name: str) -> RuntimeApp | None:
        for a in self.apps:
            if a.name == name:
                return a
        return None

    def annotation(self, name: str) -> str | None:
        for kv in self.annotations:
            if kv.name == name:
                return kv.value
        return None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "acVersion": AC_VERSION,
            "acKind": "PodManifest",
            "apps": [_runtime_app_dict(a) for a in self.apps],
            "volumes": [_volume_dict(v) for v in self.volumes] or None,
            "isolators": [i.to_dict() for i in self.isolators] or None,
            "annotations": [k.to_dict() for k in self.annotations] or None,
            "ports": [_exposed_dict(p) for p in self.ports] or None,
        }
        out.update(self.extra)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


# ---- serialisation ----------------------------------------------------------------


def app_dict(a: App) -> dict[str, Any]:
    out: dict[str, Any] = {"exec": list(a.exec), "user": a.user, "group": a.group}
    if a.supplementary_gids:
        out["supplementaryGIDs"] = list(a.supplementary_gids)
    if a.event_handlers:
        out["eventHandlers"] = list(a.event_handlers)
    if a.working_directory:
        out["workingDirectory"] = a.working_directory
    if a.environment:
        out["environment"] = [k.to_dict() for k in a.environment]
    if a.isolators:
        out["isolators"] = [i.to_dict() for i in a.isolators]
    if a.mount_points:
        out["mountPoints"] = [m.to_dict() for m in a.mount_points]
    if a.ports:
        out["ports"] = [p.to_dict() for p in a.ports]
    return out


def _runtime_app_dict(a: RuntimeApp) -> dict[str, Any]:
    image: dict[str, Any] = {"name": a.image.name, "id": a.image.id}
    if a.image.labels:
        image["labels"] = [k.to_dict() for k in a.image.labels]
    out: dict[str, Any] = {"name": a.name, "image": image}
    if a.app is not None:
        out["app"] = app_dict(a.app)
    if a.read_only_rootfs:
        out["readOnlyRootFS"] = True
    if a.mounts:
        out["mounts"] = [{"volume": m.volume, "path": m.path} for m in a.mounts]
    if a.annotations:
        out["annotations"] = [k.to_dict() for k in a.annotations]
    return out


def _volume_dict(v: Volume) -> dict[str, Any]:
    out: dict[str, Any] = {"name": v.name, "kind": v.kind}
    if v.source:
        out["source"] = v.source
    if v.read_only is not None:
        out["readOnly"] = v.read_only
    if v.recursive is not None:
        out["recursive"] = v.recursive
    if v.mode:
        out["mode"] = v.mode
    if v.uid is not None:
        out["uid"] = v.uid
    if v.gid is not None:
        out["gid"] = v.gid
    return out


def _exposed_dict(p: ExposedPort) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name, "hostPort": p.host_port}
    if p.host_ip:
        out["hostIP"] = p.host_ip
    return out


# ---- parsing ------------------------------------------------------------------------


def _kv(o: JsonObject) -> KV:
    kv = KV(o.str_("name"), o.str_("value", ""))
    o.done()
    return kv


def _annotations(o: JsonObject, key: str) -> tuple[KV, ...]:
    """appc annotations: AC identifiers as names, at most MAX_KV_BYTES in all."""
    out = []
    for p, x in o.list_(key):
        kv = _kv(o.child(x, p))
        check.ac_identifier(kv.name, f"{p}.name")
        out.append(kv)
    check.kv_size(((kv.name, kv.value) for kv in out), o.p(key))
    return tuple(out)


def _iso(o: JsonObject) -> Isolator:
    iso = Isolator(o.str_("name"), o.value("value"))
    o.done()
    return iso


def parse_app(data: Any, path: str = "app", strict: bool = False) -> App:
    """An app section; its names and paths checked (`validate`), its exec only for NULs
    and relative paths: an image may leave it empty for --exec to fill."""
    o = JsonObject(data, path, strict=strict)
    mps = []
    for p, x in o.list_("mountPoints"):
        m = o.child(x, p)
        mps.append(MountPoint(check.ac_name(m.str_("name"), f"{p}.name"),
                              check.abs_path(m.str_("path"), f"{p}.path"),
                              m.bool_("readOnly")))  # fmt: skip
        m.done()
    ports = []
    for p, x in o.list_("ports"):
        m = o.child(x, p)
        ports.append(
            Port(
                check.ac_name(m.str_("name"), f"{p}.name"),
                m.str_("protocol", "tcp"),
                m.int_("port"),
                m.int_("count", 1),
                m.bool_("socketActivated"),
            )
        )
        m.done()
    exec_ = o.strs("exec")
    if exec_:
        check.exec_argv(exec_, o.p("exec"))
    env = []
    for p, x in o.list_("environment"):
        kv = _kv(o.child(x, p))
        check.env_name(kv.name, f"{p}.name")
        check.no_nul(kv.value, f"{p}.value")
        env.append(kv)
    wd = o.str_("workingDirectory", "")
    if wd:
        check.abs_path(wd, o.p("workingDirectory"))
    app = App(
        exec=exec_,
        user=check.no_nul(o.str_("user", "0"), o.p("user")),
        group=check.no_nul(o.str_("group", "0"), o.p("group")),
        supplementary_gids=o.ints("supplementaryGIDs"),
        working_directory=wd,
        environment=tuple(env),
        isolators=tuple(_iso(o.child(x, p)) for p, x in o.list_("isolators")),
        mount_points=tuple(mps),
        ports=tuple(ports),
        event_handlers=tuple(x for _, x in o.list_("eventHandlers")),
    )
    o.done()
    return app


def _runtime_app(o: JsonObject) -> RuntimeApp:
    im = o.child(o.value("image"), o.p("image"))
    image = ImageRef(
        im.str_("name", ""),
        im.str_("id"),
        tuple(_kv(im.child(x, p)) for p, x in im.list_("labels")),
    )
    im.done()
    name = check.ac_name(o.str_("name"), o.p("name"))
    raw_app = o.object_("app")
    mounts = []
    for p, x in o.list_("mounts"):
        m = o.child(x, p)
        mounts.append(Mount(check.ac_name(m.str_("volume"), f"{p}.volume"),
                            mount_target(m.str_("path"), f"{p}.path")))  # fmt: skip
        m.object_("appVolume")
        m.done()
    ra = RuntimeApp(
        name=name,
        image=image,
        app=parse_app(raw_app, o.p("app"), strict=True) if raw_app is not None else None,
        read_only_rootfs=o.bool_("readOnlyRootFS"),
        mounts=tuple(mounts),
        annotations=_annotations(o, "annotations"),
    )
    o.done()
    if ra.app is not None:
        check.exec_argv(ra.app.exec, o.p("app.exec"))
    return ra


def mount_target(path: str, what: str) -> str:
    """A mount's target: a path in the app (a relative one, as in rkt, from the app's
    root: `dir1` and `../../x` mean `/dir1` and `/x`), or the name of one of its image's
    mount points (appc lets a mount name one)."""
    if not path:
        raise check.InvalidValue(f"{what}: empty path")
    return check.no_nul(path, what)


def _volume(o: JsonObject) -> Volume:
    v = Volume(
        name=check.ac_name(o.str_("name"), o.p("name")),
        kind=o.str_("kind"),
        source=o.str_("source", ""),
        read_only=o.opt_bool("readOnly"),
        recursive=o.opt_bool("recursive"),
        mode=o.str_("mode", ""),
        uid=o.opt_int("uid"),
        gid=o.opt_int("gid"),
    )
    o.done()
    return check_volume(v, o.path + ".")


def check_volume(v: Volume, where: str) -> Volume:
    """A volume's own rules (appc's types.Volume); its source on the host is checked by
    stage0 when the pod is prepared. `where` + key names a value in messages."""
    if v.kind not in ("host", "empty"):
        raise check.InvalidValue(f"{where}kind: unknown volume kind {v.kind!r}",
                                 "expected host or empty")  # fmt: skip
    if v.kind == "host":
        check.abs_path(v.source, f"{where}source")
    elif v.source:
        raise check.InvalidValue(f"{where}source: an empty volume has no source")
    if v.mode:
        try:
            int(v.mode, 8)
        except ValueError:
            raise check.InvalidValue(f"{where}mode: {v.mode!r} is not an octal mode") from None
    return v


def _exposed(o: JsonObject) -> ExposedPort:
    p = ExposedPort(check.ac_name(o.str_("name"), o.p("name")), o.int_("hostPort"),
                    o.str_("hostIP", ""))  # fmt: skip
    o.object_("podPort")
    o.done()
    if not 0 < p.host_port < 65536:
        raise ManifestError(f"{o.p('hostPort')}: {p.host_port} is out of range")
    return p


def parse_pod_manifest(data: Any) -> PodManifest:
    o = JsonObject(data, "")
    kind = o.str_("acKind")
    if kind != "PodManifest":
        raise ManifestError(f"acKind: expected PodManifest, got {kind!r}")
    o.str_("acVersion")
    extra: dict[str, Any] = {
        k: o.object_(k) for k in ("userAnnotations", "userLabels") if k in o.raw
    }
    for k in extra:
        check.kv_size(o.str_map(k), k)
    pm = PodManifest(
        apps=tuple(_runtime_app(o.child(x, p)) for p, x in o.list_("apps")),
        volumes=tuple(_volume(o.child(x, p)) for p, x in o.list_("volumes")),
        isolators=tuple(_iso(o.child(x, p)) for p, x in o.list_("isolators")),
        annotations=_annotations(o, "annotations"),
        ports=tuple(_exposed(o.child(x, p)) for p, x in o.list_("ports")),
        extra=extra,
    )
    o.done()
    for what, names in (("app", [a.name for a in pm.apps]),
                        ("volume", [v.name for v in pm.volumes])):  # fmt: skip
        for n in names:
            if names.count(n) > 1:
                raise ManifestError(f"{what}s: duplicate {what} name {n!r}")
    return pm


def load_pod_manifest(text: str | bytes) -> PodManifest:
    return parse_pod_manifest(check.load_json(text, "pod manifest"))


# ---- seccomp and oom-score-adj isolators ------------------------------------------


class SeccompMode(enum.StrEnum):
    """`--seccomp mode=...`: which isolator the set goes into."""

    RETAIN = "retain"  # os/linux/seccomp-retain-set: only these syscalls
    REMOVE = "remove"  # os/linux/seccomp-remove-set: all syscalls but these


SECCOMP_ISOLATORS = {SeccompMode.RETAIN: ISO_SECCOMP_RETAIN,
                     SeccompMode.REMOVE: ISO_SECCOMP_REMOVE}


@record
class SeccompFilter:
    """An app's seccomp isolator: syscall names and `@scope/group`s, and the errno name
    a filtered call fails with ("" = the process is killed by SIGSYS)."""

    mode: SeccompMode
    set: tuple[str, ...]
    errno: str = ""

    def isolator(self) -> Isolator:
        value: dict[str, Any] = {"set": list(self.set)}
        if self.errno:
            value["errno"] = self.errno
        return Isolator(SECCOMP_ISOLATORS[self.mode], value)


def seccomp_filter(app: App, where: str = "app") -> SeccompFilter | None:
    """The app's seccomp isolator, or None; two of them (appc allows one) is an error."""
    found = [(m, i) for i in app.isolators for m, n in SECCOMP_ISOLATORS.items()
             if i.name == n]
    if not found:
        return None
    if len(found) > 1:
        raise ManifestError(f"{where}: too many seccomp isolators (appc allows one)")
    mode, iso = found[0]
    value = iso.value
    items = value.get("set") if isinstance(value, dict) else None
    if not isinstance(items, list) or not items or not all(
        isinstance(x, str) and x for x in items
    ):
        raise ManifestError(f"{where}: isolator {iso.name}: \"set\" must be a non-empty "
                            "list of syscall names")
    err = value.get("errno", "")
    if not isinstance(err, str):
        raise ManifestError(f"{where}: isolator {iso.name}: \"errno\" must be a string")
    return SeccompFilter(mode, tuple(items), err)


OOM_SCORE_ADJ_RANGE = range(-1000, 1001)


def oom_score_adj(app: App, where: str = "app") -> int | None:
    """The app's os/linux/oom-score-adj isolator (-1000..1000), or None."""
    value = app.isolator(ISO_OOM_SCORE_ADJ)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) \
            or value not in OOM_SCORE_ADJ_RANGE:
        raise ManifestError(f"{where}: isolator {ISO_OOM_SCORE_ADJ}: expected an integer "
                            f"from -1000 to 1000, got {value!r}")
    return value


# ---- resource quantities (Kubernetes notation, as appc isolators use) ----------------

_DECIMAL = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}


def parse_quantity(text: str, *, milli: bool = False) -> int:
    """'42M' -> 42000000, '1Gi' -> 1073741824; with milli, '500m' -> 500 and '2' -> 2000."""
    s = str(text).strip()
    num, suffix = s, ""
    for suf in sorted([*_BINARY, *_DECIMAL, "m"], key=len, reverse=True):
        if suf and s.endswith(suf):
            num, suffix = s[: -len(suf)], suf
            break
    try:
        value = float(num)
    except ValueError:
        raise ManifestError(f"invalid quantity {text!r}") from None
    if value < 0:
        raise ManifestError(f"invalid quantity {text!r}: negative")
    if suffix == "m":
        return round(value) if milli else max(1, round(value / 1000))
    mult = _BINARY.get(suffix) or _DECIMAL[suffix]
    return round(value * mult * (1000 if milli else 1))
