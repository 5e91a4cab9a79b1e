"""The seed's path, literally: build as the seed says, then a plain `rkt run` boots a VM.

    ./configure --with-stage1-flavors=kvm --with-stage1-kvm-hypervisors=lkvm,qemu && make
    build/target/bin/rkt run IMAGE        # no --stage1-* flag: the default ./configure chose

The app prints `uname -r`: a VM pod shows the release of the guest kernel the stage1
image carries, a container pod the host's. Every tree is a fresh `git clone` of this
repository (support.built), so this is what a new user gets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import kvm_helpers as kh
import pytest

from pyrkt import __version__
from support.built import BIN, build_env, clone, configure_make, kernel_release

pytestmark = [pytest.mark.qemu, pytest.mark.root]
HOST_RELEASE = os.uname().release


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kh.busybox_aci(tmp_path_factory.mktemp("aci"))


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "data"
    yield d
    kh.kill_and_gc(d, build_env())


def uname_r(tree: Path, data: Path, image: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`rkt run IMAGE` with the tree's built rkt, from another working directory."""
    argv = [str(tree / BIN / "rkt"), f"--dir={data}", *flags, "run",
            "--insecure-options=image", "--net=none", str(image),
            "--exec=/bin/busybox", "--", "uname", "-r"]  # fmt: skip
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False,
                        cwd=data.parent, stdin=subprocess.DEVNULL)  # fmt: skip
    assert cp.returncode == 0, f"{cp.stdout}\n{cp.stderr}\n{kh.all_diagnostics(data)}"
    return cp


def test_seed_build_then_plain_rkt_run_boots_a_vm(
    seed_tree: Path, image: Path, data_dir: Path
) -> None:
    guest = kernel_release(seed_tree / BIN / "stage1-kvm-qemu.aci")
    assert guest != HOST_RELEASE, "the test needs a guest kernel other than the host's"
    cp = uname_r(seed_tree, data_dir, image)
    assert cp.stdout.split() == [guest], cp.stderr
    if shutil.which("lkvm") is None:
        # the configured default (the first hypervisor) cannot run here: one line says so
        said = [ln for ln in cp.stderr.splitlines() if "lkvm" in ln]
        assert said == ["rkt: stage1-kvm-lkvm.aci needs lkvm (kvmtool), which this host "
                        "does not have: using stage1-kvm-qemu.aci (qemu)"], cp.stderr
    pods = kh.pod_dirs(data_dir)
    assert len(pods) == 1
    manifest = json.loads((pods[0] / "stage1" / "manifest").read_text())
    assert manifest["name"] == "coreos.com/rkt/stage1-kvm"


def test_first_flavor_is_the_default_and_default_flavor_switches_it(
    tmp_path: Path, image: Path, data_dir: Path
) -> None:
    tree = clone(tmp_path / "rkt")
    configure_make(tree, "--with-stage1-flavors=coreos,kvm")
    assert uname_r(tree, data_dir, image).stdout.split() == [HOST_RELEASE]  # a container

    built = configure_make(tree, "--with-stage1-flavors=coreos,kvm",
                           "--with-stage1-default-flavor=kvm")  # fmt: skip
    assert f"default stage1 coreos.com/rkt/stage1-kvm:{__version__}-qemu" in built.stdout
    guest = kernel_release(tree / BIN / "stage1-kvm.aci")
    assert uname_r(tree, data_dir, image).stdout.split() == [guest]  # a VM

    # rkt's stage1.d still overrides the build's default at run time
    local = tmp_path / "local"
    (local / "stage1.d").mkdir(parents=True)
    conf = local / "stage1.d" / "coreos.json"
    conf.write_text(json.dumps({
        "rktKind": "stage1", "rktVersion": "v1", "name": "coreos.com/rkt/stage1-coreos",
        "version": __version__, "location": str(tree / BIN / "stage1-coreos.aci")}))
    flag = f"--local-config={local}"
    assert uname_r(tree, data_dir, image, flag).stdout.split() == [HOST_RELEASE]
    version = subprocess.run([tree / BIN / "rkt", flag, "version"], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    assert f"Default stage1 image: coreos.com/rkt/stage1-coreos:{__version__}\n" in version
    assert f"Default stage1 from: {conf} (name, version), {conf} (location)\n" in version
