"""Docker / OCI image config -> appc image manifest, as rkt's docker2aci converted them.

- name: `<registry>/<repository>` made a legal AC identifier (`registry-1.docker.io/
  library/redis`; `127.0.0.1:5000/busybox` becomes `127.0.0.1_5000/busybox`)
- labels: `version` = the tag, `os`, `arch` (appc spelling: amd64, aarch64, armv7l...)
- app: exec = Entrypoint + Cmd; environment; workingDirectory; user/group from `User`
  (`""` -> 0/0, `u` -> u/u, `u:g` -> u/g); exposed ports as ports named like `6379-tcp`;
  volumes as mount points named like `volume-data`; the image's labels as userLabels
- annotations: `appc.io/docker/*` (registry, repository, image id, entrypoint, cmd, ...)
  and `created`, `author`.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from typing import Any

from pyrkt.appc.image import (
    App,
    ImageManifest,
    ManifestError,
    MountPoint,
    NameValue,
    Port,
    sanitize_ac_identifier,
    sanitize_ac_name,
)

ANN_REGISTRY = "appc.io/docker/registryurl"
ANN_REPOSITORY = "appc.io/docker/repository"
ANN_IMAGE_ID = "appc.io/docker/imageid"
ANN_MANIFEST_HASH = "appc.io/docker/manifesthash"
ANN_ENTRYPOINT = "appc.io/docker/entrypoint"
ANN_CMD = "appc.io/docker/cmd"
ANN_ORIGINAL_NAME = "appc.io/docker/originalname"
ANN_TAG = "appc.io/docker/tag"

# GOARCH (+ variant) -> appc arch label
_ARCH = {
    ("amd64", ""): "amd64",
    ("386", ""): "i386",
    ("arm64", ""): "aarch64",
    ("arm64", "v8"): "aarch64",
    ("arm", "v6"): "armv6l",
    ("arm", "v7"): "armv7l",
    ("arm", ""): "armv7l",
    ("ppc64le", ""): "ppc64le",
    ("s390x", ""): "s390x",
}


def appc_arch(arch: str, variant: str = "") -> str:
    return _ARCH.get((arch, variant)) or _ARCH.get((arch, "")) or arch


def parse_user(user: str) -> tuple[str, str]:
    if not user:
        return "0", "0"
    u, sep, g = user.partition(":")
    return (u, g) if sep else (u, u)


def convert_ports(exposed: Mapping[str, Any] | None) -> tuple[Port, ...]:
    ports = []
    for spec in exposed or {}:
        num, _, proto = spec.partition("/")
        try:
            port = int(num)
        except ValueError:
            raise ManifestError(f"docker image config: bad exposed port {spec!r}") from None
        ports.append(Port(name=sanitize_ac_name(spec), protocol=proto or "tcp", port=port))
    return tuple(sorted(ports, key=lambda p: p.name))


def convert_volumes(volumes: Mapping[str, Any] | None) -> tuple[MountPoint, ...]:
    mps = []
    seen: dict[str, int] = {}
    for path in sorted(volumes or {}):
        name = sanitize_ac_name(posixpath.join("volume", path.lstrip("/")))
        if name in seen:
            seen[name] += 1
            name = f"{name}-{seen[name] - 1}"
        else:
            seen[name] = 1
        mps.append(MountPoint(name=name, path=path))
    return tuple(sorted(mps, key=lambda m: m.name))


def image_name(registry: str, repository: str) -> str:
    return sanitize_ac_identifier(f"{registry}/{repository}")


def config_to_manifest(
    config: Mapping[str, Any],
    *,
    registry: str,
    repository: str,
    tag: str | None,
    original_name: str = "",
    image_digest: str = "",
    manifest_digest: str = "",
    name: str | None = None,
) -> ImageManifest:
    """The appc manifest of a docker/OCI image from its config blob (decoded JSON)."""
    inner: Mapping[str, Any] = config.get("config") or {}
    labels = []
    if tag:
        labels.append(NameValue("version", tag))
    labels.append(NameValue("os", str(config.get("os") or "linux")))
    arch = appc_arch(str(config.get("architecture") or "amd64"), str(config.get("variant") or ""))
    labels.append(NameValue("arch", arch))
    ann: list[NameValue] = []

    def note(key: str, value: object) -> None:
        if value:
            ann.append(NameValue(key, str(value)))

    entrypoint = list(inner.get("Entrypoint") or [])
    cmd = list(inner.get("Cmd") or [])
    note("author", config.get("author"))
    note("created", config.get("created"))
    note(ANN_ORIGINAL_NAME, original_name)
    note(ANN_REGISTRY, registry)
    note(ANN_REPOSITORY, repository)
    note(ANN_IMAGE_ID, image_digest)
    note(ANN_MANIFEST_HASH, manifest_digest)
    note(ANN_TAG, tag)
    if entrypoint:
        note(ANN_ENTRYPOINT, json.dumps(entrypoint))
    if cmd:
        note(ANN_CMD, json.dumps(cmd))
    env = []
    for item in inner.get("Env") or []:
        k, sep, v = str(item).partition("=")
        if sep:
            env.append(NameValue(k, v))
    user, group = parse_user(str(inner.get("User") or ""))
    user_labels = inner.get("Labels") or {}
    app = App(
        exec=tuple(str(x) for x in entrypoint + cmd),
        user=user,
        group=group,
        working_directory=str(inner.get("WorkingDir") or ""),
        environment=tuple(env),
        mount_points=convert_volumes(inner.get("Volumes")),
        ports=convert_ports(inner.get("ExposedPorts")),
        user_labels=tuple(sorted((str(k), str(v)) for k, v in user_labels.items())),
    )
    return ImageManifest(
        name=name or image_name(registry, repository),
        labels=tuple(labels),
        app=app,
        annotations=tuple(ann),
    )
