"""Stage1 ACIs: names as the seed gives them, manifests with rkt's entrypoint annotations."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from pyrkt.options import GlobalOptions
from pyrkt.stage1 import contract
from pyrkt.stage1.build.aci import (
    Flavor,
    Hypervisor,
    aci_filename,
    build_stage1_aci,
    ensure_stage1,
)


def test_seed_names() -> None:
    assert aci_filename(Flavor.KVM, Hypervisor.QEMU) == "stage1-kvm.aci"
    assert aci_filename(Flavor.KVM, Hypervisor.QEMU, several=True) == "stage1-kvm-qemu.aci"
    assert aci_filename(Flavor.KVM, Hypervisor.LKVM, several=True) == "stage1-kvm-lkvm.aci"
    assert aci_filename(Flavor.COREOS) == "stage1-coreos.aci"


def test_coreos_aci_has_manifest_and_entrypoints(tmp_path: Path) -> None:
    aci = build_stage1_aci(Flavor.COREOS, tmp_path)
    assert aci.name == "stage1-coreos.aci"
    with tarfile.open(aci) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest"))  # type: ignore[arg-type]
        run = tar.extractfile("rootfs/run").read().decode()  # type: ignore[union-attr]
        mode = tar.getmember("rootfs/run").mode
    assert manifest["name"] == "coreos.com/rkt/stage1-coreos"
    anns = {a["name"]: a["value"] for a in manifest["annotations"]}
    assert anns[contract.ANN_RUN] == "/run"
    assert anns[contract.ANN_INTERFACE_VERSION] == str(contract.INTERFACE_VERSION)
    labels = {lb["name"]: lb["value"] for lb in manifest["labels"]}
    assert labels["os"] == "linux" and "version" in labels and "arch" in labels
    assert "rootfs/enter" in names and "rootfs/gc" in names and "rootfs/stop" in names
    assert "-m pyrkt.stage1.container run" in run
    assert mode & 0o111


def test_ensure_stage1_builds_once(tmp_path: Path) -> None:
    g = GlobalOptions(dir=tmp_path)
    first = ensure_stage1(g, "fly")
    mtime = first.stat().st_mtime_ns
    second = ensure_stage1(g, Flavor.FLY)
    assert first == second and second.stat().st_mtime_ns == mtime
