"""The seed's build flow from a fresh clone, and `rkt stage1 build` itself.

    ./configure --with-stage1-flavors=kvm --with-stage1-kvm-hypervisors=lkvm,qemu && make

gives build/target/bin/stage1-kvm-lkvm.aci and stage1-kvm-qemu.aci (one hypervisor:
stage1-kvm.aci), each a proper appc image with the kvm assets and, for qemu, QEMU itself,
and build/target/bin/rkt, which says which of them is its default (the clone is built
once per session: support.built.seed_tree; tests/e2e/test_seed_path.py boots it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pyrkt import __version__
from pyrkt.stage1 import contract
from support.built import BIN, SEED_CONFIGURE

REPO = Path(__file__).resolve().parents[2]


def read_aci(path: Path) -> tuple[dict[str, object], set[str]]:
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest"))  # type: ignore[arg-type]
        return manifest, set(tar.getnames())


def anns(manifest: dict[str, object]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in manifest["annotations"]}  # type: ignore[attr-defined]


def labels(manifest: dict[str, object]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in manifest["labels"]}  # type: ignore[attr-defined]


def rkt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyrkt", *args], capture_output=True, text=True, cwd=cwd,
        check=False,
    )


def test_build_cli_writes_seed_named_images(tmp_path: Path) -> None:
    cp = rkt("stage1", "build", "--flavors=coreos,fly", f"--output={tmp_path}")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split() == [str(tmp_path / "stage1-coreos.aci"),
                                 str(tmp_path / "stage1-fly.aci")]  # fmt: skip
    manifest, names = read_aci(tmp_path / "stage1-fly.aci")
    assert manifest["name"] == "coreos.com/rkt/stage1-fly"
    assert anns(manifest)[contract.ANN_FLAVOR] == "fly"
    assert {"rootfs/run", "rootfs/enter", "rootfs/stop", "rootfs/gc"} <= names


def test_build_cli_rejects_unknown_flavor(tmp_path: Path) -> None:
    cp = rkt("stage1", "build", "--flavors=kvm,vmware", f"--output={tmp_path}")
    assert cp.returncode == 254
    assert "invalid value 'vmware' for --flavors" in cp.stderr
    assert "Traceback" not in cp.stderr
    assert not list(tmp_path.iterdir())


def test_bundle_lkvm_needs_an_lkvm_binary(tmp_path: Path) -> None:
    if shutil.which("lkvm"):
        pytest.skip("an lkvm binary is on the PATH here")
    cp = rkt("stage1", "build", "--flavors=kvm", "--hypervisors=lkvm", "--bundle-lkvm",
             f"--output={tmp_path}")  # fmt: skip
    assert cp.returncode == 254
    assert "--bundle-lkvm: no lkvm (kvmtool) binary on the PATH" in cp.stderr
    assert not list(tmp_path.glob("*.aci"))


def test_configure_rejects_unknown_hypervisor(tmp_path: Path) -> None:
    cp = subprocess.run(
        [REPO / "configure", "--with-stage1-kvm-hypervisors=qemu,xen"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert cp.returncode == 1
    assert "unknown value 'xen'" in cp.stderr
    assert not (tmp_path / "config.mk").exists()


@pytest.mark.parametrize(("args", "says"), [
    (["--with-stage1-flavors=coreos,kvm", "--with-stage1-default-flavor=fly"],
     "--with-stage1-default-flavor=fly: not one of the flavors built"),
    (["--with-stage1-default-flavor=kvm", "--with-stage1-default-name=example.com/s1",
      "--with-stage1-default-version=1"], "mutually exclusive"),
    (["--with-stage1-default-name=example.com/s1"], "go together"),
    (["--with-stage1-default-location=stage1.aci"], "neither an absolute path nor"),
    (["--with-stage1-default-images-directory=images"], "not absolute"),
])  # fmt: skip
def test_configure_checks_the_default_stage1(tmp_path: Path, args: list[str], says: str) -> None:
    cp = subprocess.run(
        [REPO / "configure", "--with-stage1-kvm-kernel=distro", *args],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert cp.returncode == 1
    assert cp.stderr.startswith("configure: ") and says in cp.stderr
    assert not (tmp_path / "config.mk").exists()


@pytest.mark.qemu
def test_configure_and_make_from_a_fresh_clone(seed_tree: Path, tmp_path: Path) -> None:
    out = seed_tree / BIN
    assert sorted(p.name for p in out.iterdir()) == [
        "rkt", "stage1-kvm-lkvm.aci", "stage1-kvm-qemu.aci",
    ]  # fmt: skip
    # the built rkt runs from anywhere (here through a symlink, as when installed in a
    # bin folder) and says which stage1 it uses and why
    (tmp_path / "rkt").symlink_to(out / "rkt")
    version = subprocess.run([tmp_path / "rkt", "version"], capture_output=True, text=True,
                             cwd=tmp_path, check=False)  # fmt: skip
    assert version.returncode == 0 and version.stdout.startswith("rkt Version:")
    lines = dict(ln.split(": ", 1) for ln in version.stdout.splitlines())
    hv = "lkvm" if shutil.which("lkvm") else "qemu"
    assert lines["Default stage1 image"] == f"coreos.com/rkt/stage1-kvm:{__version__}-{hv}"
    assert lines["Default stage1 location"] == str(out / f"stage1-kvm-{hv}.aci")
    assert lines["Default stage1 from"] == "./configure " + " ".join(SEED_CONFIGURE)
    config = subprocess.run([out / "rkt", "config"], capture_output=True, text=True,
                            cwd=tmp_path, check=False)  # fmt: skip
    stage1 = json.loads(config.stdout)["stage0"][-1]
    assert (stage1["name"], stage1["location"]) == ("coreos.com/rkt/stage1-kvm",
                                                    str(out / f"stage1-kvm-{hv}.aci"))

    for hv in ("qemu", "lkvm"):
        manifest, names = read_aci(out / f"stage1-kvm-{hv}.aci")
        assert manifest["acKind"] == "ImageManifest"
        assert manifest["name"] == "coreos.com/rkt/stage1-kvm"
        lab = labels(manifest)
        assert lab["os"] == "linux" and lab["arch"] == "amd64" and lab["version"]
        ann = anns(manifest)
        assert ann[contract.ANN_RUN] == "/run"
        assert ann[contract.ANN_INTERFACE_VERSION] == str(contract.INTERFACE_VERSION)
        assert ann[contract.ANN_FLAVOR] == "kvm" and ann[contract.ANN_HYPERVISOR] == hv
        assert {"rootfs/kvm/vmlinuz", "rootfs/kvm/initrd.img", "rootfs/run"} <= names
        bundled = "rootfs/kvm/bin/qemu-system-x86_64" in names
        assert bundled == (hv == "qemu"), "only the qemu image carries QEMU"
    _, names = read_aci(out / "stage1-kvm-qemu.aci")
    assert "rootfs/kvm/qemu/lib/ld-linux-x86-64.so.2" in names
    assert "rootfs/kvm/qemu/share/qemu/bios-256k.bin" in names
    assert "rootfs/kvm/qemu/modules/accel-tcg-x86_64.so" in names
    with tarfile.open(out / "stage1-kvm-qemu.aci") as tar:
        run = tar.extractfile("rootfs/run").read().decode()  # type: ignore[union-attr]
    assert 'PATH="$s1/kvm/bin:' in run, "the entrypoint must prefer the bundled QEMU"


@pytest.mark.qemu
def test_one_hypervisor_gives_stage1_kvm_aci(tmp_path: Path) -> None:
    cp = rkt("stage1", "build", "--flavors=kvm", "--hypervisors=qemu", "--kernel=distro",
             f"--output={tmp_path}")  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".aci"] == ["stage1-kvm.aci"]
    manifest, names = read_aci(tmp_path / "stage1-kvm.aci")
    assert anns(manifest)[contract.ANN_HYPERVISOR] == "qemu"
    assert "rootfs/kvm/bin/qemu-system-x86_64" not in names  # host QEMU unless --bundle-qemu
    with tarfile.open(tmp_path / "stage1-kvm.aci") as tar:
        info = json.load(tar.extractfile("rootfs/kvm/build-info.json"))  # type: ignore[arg-type]
    assert info["kernel"] == "distro" and info["bundled-hypervisor"] is None
