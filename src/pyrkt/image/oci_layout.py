"""Importing from an OCI image layout on disk: `oci:DIR[:TAG]` (a pyrkt extension).

The tag is matched against `org.opencontainers.image.ref.name` in `index.json`; without
one, the layout must hold exactly one image. An index is resolved to linux/amd64. Every
blob read is checked against its digest while it is applied.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyrkt.appc.image import sanitize_ac_identifier
from pyrkt.errors import NotFound, RktError
from pyrkt.image.docker2aci import config_to_manifest
from pyrkt.image.layered import VerifyingReader, import_layered
from pyrkt.image.layers import ByteStream
from pyrkt.image.store import Store

SCHEME = "oci:"
REF_NAME = "org.opencontainers.image.ref.name"
_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


def parse_oci_ref(ref: str) -> tuple[Path, str | None]:
    rest = ref[len(SCHEME) :]
    d, sep, tag = rest.rpartition(":")
    if sep and d and "/" not in tag and not Path(rest).is_dir():
        return Path(d), tag
    return Path(rest), None


class Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        if not (root / "index.json").is_file():
            raise NotFound(f"{root}: not an OCI image layout (no index.json)")

    def blob_path(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        if not hexd or "/" in digest or ".." in digest:
            raise RktError(f"{self.root}: bad digest {digest!r}")
        return self.root / "blobs" / algo / hexd

    def read_json(self, desc: dict[str, Any]) -> dict[str, Any]:
        digest = str(desc["digest"])
        with open(self.blob_path(digest), "rb") as f:
            r = VerifyingReader(f, digest, f"{self.root}: blob {digest}")
            data = r.read()
            r.finish()
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise RktError(f"{self.root}: blob {digest} is not a JSON object")
        return doc

    def find(self, tag: str | None) -> dict[str, Any]:
        index = json.loads((self.root / "index.json").read_text())
        descs = list(index.get("manifests") or [])
        if tag is not None:
            descs = [d for d in descs if (d.get("annotations") or {}).get(REF_NAME) == tag]
            if not descs:
                raise NotFound(f"no image tagged {tag!r} in OCI layout {self.root}")
        elif len(descs) != 1:
            raise RktError(f"OCI layout {self.root} holds {len(descs)} images",
                           "name one as oci:DIR:TAG")  # fmt: skip
        desc: dict[str, Any] = descs[0]
        while desc.get("mediaType") in _INDEX_TYPES:
            sub = self.read_json(desc)
            for m in sub.get("manifests") or []:
                p = m.get("platform") or {}
                if p.get("os") == "linux" and p.get("architecture") == "amd64":
                    desc = m
                    break
            else:
                raise NotFound(f"OCI layout {self.root}: no linux/amd64 image in the index")
        return desc


def fetch_oci_layout(store: Store, ref: str) -> str:
    root, tag = parse_oci_ref(ref)
    layout = Layout(root)
    mdesc = layout.find(tag)
    manifest = layout.read_json(mdesc)
    config = layout.read_json(manifest["config"])
    layer_descs = list(manifest.get("layers") or [])
    digests = [str(d["digest"]) for d in layer_descs]
    name = sanitize_ac_identifier(root.resolve().name)
    am = config_to_manifest(config, registry="", repository=name, tag=tag or "latest",
                            original_name=ref, manifest_digest=str(mdesc["digest"]),
                            name=name)  # fmt: skip

    def layers() -> Iterator[ByteStream]:
        for d in digests:
            f = open(layout.blob_path(d), "rb")  # noqa: SIM115 (closed by import_layered)
            yield VerifyingReader(f, d, f"{root}: layer {d}")

    return import_layered(store, am, digests, layers)
