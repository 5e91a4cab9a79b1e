"""rkt's tests/rkt_image_list_test.go, TestShortHash: the 12-character IDs `rkt image
list` shows work wherever an image ID is taken; a prefix that is unknown, too short or
ambiguous is refused with rkt's messages (`image cat-manifest` prints them as
`cat-manifest: ...`, exit 254)."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from rktcompat import Rkt

pytestmark = pytest.mark.root


def tiny_aci(work: Path, i: int) -> tuple[Path, str]:
    """A small ACI and its image ID (the SHA-512 of the uncompressed tar, as rkt's)."""
    d = work / f"shorthash-{i}"
    (d / "rootfs").mkdir(parents=True)
    (d / "rootfs" / "file").write_text(f"{i}\n")
    (d / "manifest").write_text(json.dumps({
        "acKind": "ImageManifest", "acVersion": "0.8.11", "name": f"shorthash--{i}",
        "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}]}))
    aci = work / f"shorthash-{i}.aci"
    with tarfile.open(aci, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(d / "manifest", "manifest")
        tar.add(d / "rootfs", "rootfs")
    return aci, "sha512-" + hashlib.sha512(aci.read_bytes()).hexdigest()[:64]


def test_short_hash(rkt: Rkt, tmp_path: Path) -> None:
    seen: dict[str, tuple[Path, str]] = {}
    i = 0
    while True:  # two images whose IDs share their first two characters
        aci, image_id = tiny_aci(tmp_path, i)
        if image_id[:9] in seen:
            pair = [seen[image_id[:9]], (aci, image_id)]
            break
        seen[image_id[:9]] = (aci, image_id)
        i += 1
    for aci, _ in pair:
        assert rkt("--insecure-options=image", "fetch", str(aci)).returncode == 0
    listed = rkt("image", "list", "--fields=id", "--no-legend").stdout.split()
    hash0, hash1 = (image_id[:19] for _, image_id in pair)
    assert sorted(listed) == sorted([hash0, hash1])

    cases = [
        ("sha512-12341234", "cat-manifest: no image IDs found\n"),
        (hash0[:8], "cat-manifest: image ID too short\n"),
        (hash0[:9], f'cat-manifest: ambiguous image ID: "{hash0[:9]}"\n'),
    ]
    for ref, err in cases:
        cp = rkt("image", "cat-manifest", ref)
        assert (cp.returncode, cp.stdout, cp.stderr) == (254, "", err)
    cp = rkt("image", "cat-manifest", hash0)
    assert cp.returncode == 0 and json.loads(cp.stdout)["acKind"] == "ImageManifest"
    for verb, args in (("export", ["--overwrite", hash0, str(tmp_path / "export.aci")]),
                       ("render", ["--overwrite", hash0, str(tmp_path / "render")]),
                       ("extract", ["--overwrite", hash0, str(tmp_path / "extract")]),
                       ("rm", [hash0])):
        cp = rkt("image", verb, *args)
        assert cp.returncode == 0, (verb, cp.stderr)
