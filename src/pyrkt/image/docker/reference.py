"""Parsing `docker://[REGISTRY/]NAME[:TAG|@DIGEST]` as rkt and docker do.

    docker://busybox                    registry-1.docker.io  library/busybox  latest
    docker://quay.io/coreos/etcd:v3     quay.io               coreos/etcd      v3
    docker://127.0.0.1:5000/redis@sha256:<64 hex>

The first path component is a registry when it contains `.` or `:` or is `localhost`;
`docker.io` and `index.docker.io` mean Docker Hub's API host `registry-1.docker.io`, where
one-component names live under `library/`.
"""

from __future__ import annotations

import re

from pyrkt.errors import UsageError
from pyrkt.record import record

SCHEME = "docker://"
DOCKER_HUB = "registry-1.docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", DOCKER_HUB}
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}")
_HOST = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?")


@record
class DockerRef:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest if given, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def name(self) -> str:
        """The image name rkt shows: REGISTRY/REPOSITORY."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        out = f"{SCHEME}{self.name}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _bad(ref: str, why: str) -> UsageError:
    return UsageError(f"invalid docker image reference {ref!r}: {why}",
                      "expected docker://[REGISTRY/]NAME[:TAG|@DIGEST]")


def parse_ref(ref: str) -> DockerRef:
    """Parse a docker:// reference (the scheme is optional)."""
    rest = ref[len(SCHEME):] if ref.startswith(SCHEME) else ref
    if not rest:
        raise _bad(ref, "empty name")
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise _bad(ref, f"bad digest {digest!r}")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise _bad(ref, f"bad tag {tag!r}")
    parts = rest.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, parts[1:]
        if not _HOST.fullmatch(registry):
            raise _bad(ref, f"bad registry {registry!r}")
    else:
        registry, path = DOCKER_HUB, parts
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
        if len(path) == 1:
            path = ["library", *path]
    for comp in path:
        if not _COMPONENT.fullmatch(comp):
            raise _bad(ref, f"bad name component {comp!r}")
    if tag is None and digest is None:
        tag = "latest"
    return DockerRef(registry=registry, repository="/".join(path), tag=tag, digest=digest)
