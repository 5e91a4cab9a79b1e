"""The appc image manifest (`manifest` at the root of an ACI), typed and validated.

`parse_image_manifest(dict)` returns an `ImageManifest` or raises `ManifestError` naming
the offending key path (`app.ports[0].port`); unknown keys are rejected the same way.
`ImageManifest.to_json()` gives back the JSON form (keys in the spec's spelling,
empty optional fields omitted).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

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
from pyrkt.record import record

__all__ = [
    "AC_VERSION", "App", "Dependency", "EventHandler", "ImageManifest", "Isolator",
    "ManifestError", "MountPoint", "NameValue", "Port", "is_ac_identifier",
    "load_image_manifest", "parse_image_manifest", "sanitize_ac_identifier",
    "sanitize_ac_name",
]  # fmt: skip
_ACID_CHARS = re.compile(r"[^a-z0-9\-._~/]")
_ACID_EDGES = re.compile(r"(^[\-._~/]+)|([\-._~/]+$)")
is_ac_identifier = check.is_ac_identifier


def sanitize_ac_identifier(s: str) -> str:
    """appc's suggestion for a legal ACIdentifier: lower case, invalid chars to `_`."""
    out = _ACID_EDGES.sub("", _ACID_CHARS.sub("_", s.lower()))
    if not out:
        raise ManifestError(f"cannot make an AC identifier out of {s!r}")
    return out


def sanitize_ac_name(s: str) -> str:
    """appc's suggestion for a legal ACName: runs of invalid chars to one `-`."""
    out = re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")
    if not out:
        raise ManifestError(f"cannot make an AC name out of {s!r}")
    return out


@record
class EventHandler:
    name: str
    exec: tuple[str, ...]


@record
class App:
    exec: tuple[str, ...] = ()
    user: str = "0"
    group: str = "0"
    supplementary_gids: tuple[int, ...] = ()
    event_handlers: tuple[EventHandler, ...] = ()
    working_directory: str = ""
    environment: tuple[NameValue, ...] = ()
    isolators: tuple[Isolator, ...] = ()
    mount_points: tuple[MountPoint, ...] = ()
    ports: tuple[Port, ...] = ()
    user_annotations: tuple[tuple[str, str], ...] = ()
    user_labels: tuple[tuple[str, str], ...] = ()


@record
class Dependency:
    image_name: str
    image_id: str = ""
    labels: tuple[NameValue, ...] = ()
    size: int = 0


@record
class ImageManifest:
    name: str
    ac_version: str = AC_VERSION
    labels: tuple[NameValue, ...] = ()
    app: App | None = None
    dependencies: tuple[Dependency, ...] = ()
    path_whitelist: tuple[str, ...] = ()
    annotations: tuple[NameValue, ...] = ()

    def label(self, name: str) -> str | None:
        for lab in self.labels:
            if lab.name == name:
                return lab.value
        return None

    def annotation(self, name: str) -> str | None:
        for a in self.annotations:
            if a.name == name:
                return a.value
        return None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"acKind": "ImageManifest", "acVersion": self.ac_version}
        d["name"] = self.name
        if self.labels:
            d["labels"] = _nv_out(self.labels)
        if self.app is not None:
            d["app"] = _app_out(self.app)
        if self.dependencies:
            d["dependencies"] = [_dep_out(x) for x in self.dependencies]
        if self.path_whitelist:
            d["pathWhitelist"] = list(self.path_whitelist)
        if self.annotations:
            d["annotations"] = _nv_out(self.annotations)
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)


# ---- output -------------------------------------------------------------------------


def _nv_out(items: Sequence[NameValue]) -> list[dict[str, str]]:
    return [x.to_dict() for x in items]


def _dep_out(x: Dependency) -> dict[str, Any]:
    d: dict[str, Any] = {"imageName": x.image_name}
    if x.image_id:
        d["imageID"] = x.image_id
    if x.labels:
        d["labels"] = _nv_out(x.labels)
    if x.size:
        d["size"] = x.size
    return d


def _app_out(a: App) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if a.exec:
        d["exec"] = list(a.exec)
    d["user"] = a.user
    d["group"] = a.group
    if a.supplementary_gids:
        d["supplementaryGIDs"] = list(a.supplementary_gids)
    if a.event_handlers:
        d["eventHandlers"] = [{"name": e.name, "exec": list(e.exec)} for e in a.event_handlers]
    if a.working_directory:
        d["workingDirectory"] = a.working_directory
    if a.environment:
        d["environment"] = _nv_out(a.environment)
    if a.isolators:
        d["isolators"] = [i.to_dict() for i in a.isolators]
    if a.mount_points:
        d["mountPoints"] = [m.to_dict() for m in a.mount_points]
    if a.ports:
        d["ports"] = [p.to_dict() for p in a.ports]
    if a.user_annotations:
        d["userAnnotations"] = dict(a.user_annotations)
    if a.user_labels:
        d["userLabels"] = dict(a.user_labels)
    return d


# ---- parsing ------------------------------------------------------------------------


def _obj(raw: object, path: str) -> JsonObject:
    return JsonObject(raw, path, prefix="image manifest: ", unknown="unknown key {path!r}")


def _name_values(o: JsonObject, key: str, *, identifiers: bool) -> tuple[NameValue, ...]:
    out = []
    for p, raw in o.list_(key):
        e = o.child(raw, p)
        nv = NameValue(e.str_("name"), e.str_("value"))
        e.done()
        if identifiers:
            check.ac_identifier(nv.name, f"image manifest: {p}.name")
        else:
            check.env_name(nv.name, f"image manifest: {p}.name")
            check.no_nul(nv.value, f"image manifest: {p}.value")
        out.append(nv)
    if identifiers:
        check.kv_size(((x.name, x.value) for x in out), f"image manifest: {o.p(key)}")
    return tuple(out)


def _parse_port(o: JsonObject) -> Port:
    port = Port(
        name=o.str_("name"),
        protocol=o.str_("protocol"),
        port=o.int_("port"),
        count=o.int_("count", 1),
        socket_activated=o.bool_("socketActivated"),
    )
    o.done()
    check.ac_name(port.name, f"image manifest: {o.path}.name")
    if not 1 <= port.port <= 65535:
        raise o.error(f"{o.path}.port: {port.port} is out of range")
    if port.count < 1:
        raise o.error(f"{o.path}.count: must be at least 1")
    return port


def _parse_app(o: JsonObject) -> App:
    handlers = []
    for p, h in o.list_("eventHandlers"):
        ho = o.child(h, p)
        handlers.append(EventHandler(ho.str_("name"), ho.strs("exec")))
        ho.done()
    isolators = []
    for p, i in o.list_("isolators"):
        io = o.child(i, p)
        isolators.append(Isolator(io.str_("name"), io.value("value")))
        io.done()
    mps = []
    for p, m in o.list_("mountPoints"):
        mo = o.child(m, p)
        mps.append(MountPoint(check.ac_name(mo.str_("name"), f"image manifest: {p}.name"),
                              check.abs_path(mo.str_("path"), f"image manifest: {p}.path"),
                              mo.bool_("readOnly")))  # fmt: skip
        mo.done()
    wd = o.str_("workingDirectory", "")
    if wd and not wd.startswith("/"):
        raise o.error("app.workingDirectory: must be an absolute path")
    app = App(
        exec=o.strs("exec"),
        user=o.str_("user"),
        group=o.str_("group"),
        supplementary_gids=o.ints("supplementaryGIDs"),
        event_handlers=tuple(handlers),
        working_directory=wd,
        environment=_name_values(o, "environment", identifiers=False),
        isolators=tuple(isolators),
        mount_points=tuple(mps),
        ports=tuple(_parse_port(o.child(x, p)) for p, x in o.list_("ports")),
        user_annotations=o.str_map("userAnnotations"),
        user_labels=o.str_map("userLabels"),
    )
    o.done()
    return app


def parse_image_manifest(raw: object) -> ImageManifest:
    """Validate a decoded manifest; raise ManifestError naming the first bad key."""
    o = _obj(raw, "")
    kind = o.str_("acKind")
    if kind != "ImageManifest":
        raise o.error(f"acKind: expected 'ImageManifest', got {kind!r}")
    name = o.str_("name")
    if not is_ac_identifier(name):
        raise o.error(f"name: {name!r} is not an AC identifier")
    deps = []
    for p, d in o.list_("dependencies"):
        do = o.child(d, p)
        deps.append(
            Dependency(
                image_name=do.str_("imageName"),
                image_id=do.str_("imageID", ""),
                labels=_name_values(do, "labels", identifiers=True),
                size=do.int_("size", 0),
            )
        )
        do.done()
    app_raw = o.value("app")
    manifest = ImageManifest(
        name=name,
        ac_version=o.str_("acVersion"),
        labels=_name_values(o, "labels", identifiers=True),
        app=_parse_app(o.child(app_raw, "app")) if app_raw is not None else None,
        dependencies=tuple(deps),
        path_whitelist=o.strs("pathWhitelist"),
        annotations=_name_values(o, "annotations", identifiers=True),
    )
    o.done()
    return manifest


def load_image_manifest(data: bytes | str) -> ImageManifest:
    return parse_image_manifest(check.load_json(data, "image manifest"))
