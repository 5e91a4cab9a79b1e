"""Image manifests: Docker schema 2 and OCI, manifest lists / OCI indexes resolved to one
platform (linux/amd64 by default). Every manifest's digest is checked against the digest
asked for (or the registry's `Docker-Content-Digest`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pyrkt.errors import NotFound, RktError
from pyrkt.image.docker.transport import RegistryError, RegistrySession
from pyrkt.record import record


class ManifestMediaType:
    DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    DOCKER_V1 = "application/vnd.docker.distribution.manifest.v1+json"
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"


MT = ManifestMediaType
ACCEPT = ", ".join([MT.OCI_INDEX, MT.DOCKER_LIST, MT.OCI_MANIFEST, MT.DOCKER_V2])
_LISTS = {MT.OCI_INDEX, MT.DOCKER_LIST}
_IMAGES = {MT.OCI_MANIFEST, MT.DOCKER_V2}
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
}
MAX_MANIFEST = 4 << 20


@record
class Descriptor:
    media_type: str
    digest: str
    size: int


@record
class ImageManifest:
    digest: str  # of the image manifest itself (not of the list it came from)
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


class ManifestError(RktError):
    """A manifest that is not what it should be."""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(d: object, where: str) -> Descriptor:
    if not isinstance(d, dict):
        raise ManifestError(f"{where}: descriptor is not an object")
    mt, dg, size = d.get("mediaType"), d.get("digest"), d.get("size")
    if not isinstance(dg, str) or ":" not in dg:
        raise ManifestError(f"{where}: descriptor without a digest")
    if not isinstance(size, int) or size < 0:
        raise ManifestError(f"{where}: descriptor {dg} without a size")
    return Descriptor(mt if isinstance(mt, str) else "", dg, size)


def _get_manifest(
    sess: RegistrySession, reference: str, what: str
) -> tuple[str, str, dict[str, Any]]:
    resp = sess.get(f"manifests/{reference}", accept=ACCEPT, what=what)
    body = resp.content
    if len(body) > MAX_MANIFEST:
        raise ManifestError(f"{what}: manifest larger than {MAX_MANIFEST} bytes")
    digest = sha256_digest(body)
    expected = reference if reference.startswith("sha256:") else \
        resp.headers.get("Docker-Content-Digest")
    if expected and expected.startswith("sha256:") and expected != digest:
        raise ManifestError(f"{what}: manifest digest mismatch: expected {expected}, "
                            f"got {digest}")
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise ManifestError(f"{what}: manifest is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise ManifestError(f"{what}: manifest is not a JSON object")
    mt = doc.get("mediaType") or resp.headers.get("Content-Type", "").split(";")[0]
    if mt in (MT.DOCKER_V1, MT.DOCKER_V1_SIGNED) or doc.get("schemaVersion") == 1:
        raise ManifestError(f"{what}: Docker schema 1 manifests are not supported",
                            "push the image again with a current docker or skopeo")
    if mt not in _LISTS | _IMAGES:
        mt = MT.OCI_INDEX if "manifests" in doc else MT.OCI_MANIFEST
    return digest, mt, doc


def pick_platform(doc: dict[str, Any], want_os: str, want_arch: str, what: str) -> str:
    """The digest of the list entry for os/arch (variant ignored except arm's v8 first)."""
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise ManifestError(f"{what}: image index without \"manifests\"")
    seen = []
    for i, entry in enumerate(entries):
        desc = _descriptor(entry, f"{what}: manifests[{i}]")
        plat = entry.get("platform") or {}
        os_, arch = plat.get("os", ""), plat.get("architecture", "")
        seen.append(f"{os_}/{arch}")
        if os_ == want_os and arch == want_arch:
            return desc.digest
    raise NotFound(f"{what}: no image for {want_os}/{want_arch} in the index",
                   f"it has: {', '.join(seen) or 'nothing'}")


def fetch_manifest(sess: RegistrySession, reference: str, what: str, *,
                   os_name: str = "linux", arch: str = "amd64") -> ImageManifest:
    """The image manifest for reference (a tag or digest), resolving an index."""
    digest, mt, doc = _get_manifest(sess, reference, what)
    if mt in _LISTS:
        sub = pick_platform(doc, os_name, arch, what)
        digest, mt, doc = _get_manifest(sess, sub, what)
        if mt in _LISTS:
            raise ManifestError(f"{what}: an index inside an index is not supported")
    config = _descriptor(doc.get("config"), f"{what}: config")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise ManifestError(f"{what}: manifest without \"layers\"")
    layers = tuple(_descriptor(x, f"{what}: layers[{i}]") for i, x in enumerate(raw_layers))
    for layer in layers:
        if layer.media_type and layer.media_type not in LAYER_TYPES:
            raise ManifestError(f"{what}: layer {layer.digest} has unsupported media type "
                                f"{layer.media_type!r}")
    return ImageManifest(digest=digest, media_type=mt, config=config, layers=layers)


__all__ = ["ACCEPT", "Descriptor", "ImageManifest", "ManifestError", "RegistryError",
           "fetch_manifest", "pick_platform", "sha256_digest"]
