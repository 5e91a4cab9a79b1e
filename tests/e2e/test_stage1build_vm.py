"""VM pods from the built stage1 ACIs: stage1-kvm-qemu.aci carries its QEMU, so a pod
runs with no QEMU on the PATH; `rkt image list` shows the stage1 images and
`--stage1-name` picks one of the two kvm images.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from stage1build_app import APP_EXIT, APP_OUT, app_aci

import pyrkt.stage1
from pyrkt import __version__

pytestmark = [pytest.mark.root, pytest.mark.qemu]
if not (Path(pyrkt.stage1.__file__).parent / "kvm" / "__main__.py").exists():
    pytest.skip("the kvm flavor's entrypoints are not in this tree yet", allow_module_level=True)



@dataclass(frozen=True)
class Built:
    qemu_aci: Path
    lkvm_aci: Path
    app_aci: Path
    no_qemu_path: str  # a PATH with every host tool except QEMU


def _no_qemu_path(work: Path) -> str:
    """/usr/bin without qemu-*: every other host tool stays reachable (never move files)."""
    d = work / "bin-without-qemu"
    d.mkdir()
    for f in Path("/usr/bin").iterdir():
        if not f.name.startswith("qemu-"):
            (d / f.name).symlink_to(f)
    path = os.pathsep.join([str(d), "/usr/sbin", "/usr/local/sbin"])
    assert shutil.which("qemu-system-x86_64", path=path) is None
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    work = tmp_path_factory.mktemp("stage1-vm")
    out = work / "bin"
    cp = subprocess.run(
        [sys.executable, "-m", "pyrkt", "stage1", "build", "--flavors=kvm",
         "--hypervisors=qemu,lkvm", "--kernel=auto", "--bundle-qemu", f"--output={out}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    return Built(out / "stage1-kvm-qemu.aci", out / "stage1-kvm-lkvm.aci", app_aci(work),
                 _no_qemu_path(work))  # fmt: skip


@pytest.fixture
def rkt_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "rkt"
    yield d
    # leave no pod behind, even when a test failed
    subprocess.run([sys.executable, "-m", "pyrkt", f"--dir={d}", "gc", "--grace-period=0s"],
                   capture_output=True, check=False)  # fmt: skip


def rkt(d: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "pyrkt", f"--dir={d}", "--insecure-options=image", *args],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip


def vm_logs(d: Path) -> str:
    """The serial console logs and hypervisor command lines of every pod under d."""
    parts = []
    for f in sorted(d.glob("pods/*/*/kvm/*")):
        if f.name in ("serial.log", "cmdline"):
            parts.append(f"--- {f}\n{f.read_text(errors='replace')}")
    return "\n".join(parts) or "(no VM logs)"


def test_vm_pod_runs_from_the_aci_with_no_qemu_on_the_path(built: Built, rkt_dir: Path) -> None:
    cp = rkt(rkt_dir, "run", "--net=none", f"--stage1-path={built.qemu_aci}",
             str(built.app_aci), path=built.no_qemu_path)  # fmt: skip
    detail = f"stdout:\n{cp.stdout}\nstderr:\n{cp.stderr}\n{vm_logs(rkt_dir)}"
    assert cp.returncode == APP_EXIT, detail
    assert APP_OUT in cp.stdout, detail
    cmdline = next(rkt_dir.glob("pods/*/*/kvm/cmdline")).read_text()
    assert "qemu-system-x86_64" in cmdline, detail

    listing = rkt(rkt_dir, "image", "list")
    assert listing.returncode == 0, listing.stderr
    assert f"coreos.com/rkt/stage1-kvm:{__version__}-qemu" in listing.stdout


def _fetch_both(built: Built, d: Path) -> None:
    for aci in (built.qemu_aci, built.lkvm_aci):  # lkvm last: the newest of the name
        cp = rkt(d, "fetch", str(aci))
        assert cp.returncode == 0, cp.stderr
    listing = rkt(d, "image", "list").stdout
    assert f"coreos.com/rkt/stage1-kvm:{__version__}-qemu" in listing
    assert f"coreos.com/rkt/stage1-kvm:{__version__}-lkvm" in listing


def test_stage1_name_selects_the_qemu_image(built: Built, rkt_dir: Path) -> None:
    _fetch_both(built, rkt_dir)
    cp = rkt(rkt_dir, "run", "--net=none",
             f"--stage1-name=coreos.com/rkt/stage1-kvm:{__version__}-qemu",
             str(built.app_aci), path=built.no_qemu_path)  # fmt: skip
    detail = f"stdout:\n{cp.stdout}\nstderr:\n{cp.stderr}\n{vm_logs(rkt_dir)}"
    assert cp.returncode == APP_EXIT, detail
    assert APP_OUT in cp.stdout, detail


def test_stage1_name_lkvm_image_runs_lkvm(built: Built, rkt_dir: Path) -> None:
    if shutil.which("lkvm"):
        pytest.skip("an lkvm binary exists here: covered by the lkvm e2e test")
    _fetch_both(built, rkt_dir)
    # No kvmtool here, and no QEMU on the PATH: an lkvm pod must fail naming lkvm,
    # never fall back to QEMU.
    cp = rkt(rkt_dir, "run", "--net=none",
             f"--stage1-name=coreos.com/rkt/stage1-kvm:{__version__}-lkvm",
             str(built.app_aci), path=built.no_qemu_path)  # fmt: skip
    assert cp.returncode == 254, f"{cp.stdout}\n{cp.stderr}"
    assert "lkvm" in cp.stderr and "qemu" not in cp.stderr.lower(), cp.stderr
