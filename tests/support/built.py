"""Clones of this repository built as a user builds them: `./configure ... && make`.

    SEED_CONFIGURE             the seed's configure arguments
    clone(dest)                `git clone` of this repository (its committed HEAD)
    configure_make(tree, *a)   `./configure A... && make` in tree; the test's Python is
                               first on the PATH (as after activating the venv), so
                               configure's default `python3` is the one with pyrkt's
                               dependencies; the guest kernel is configure's default (the
                               tailored one, built once per machine by scripts/setup.sh)
    seed_tree                  session fixture: a clone built with the seed's line
    kernel_release(aci)        the guest kernel release a kvm stage1 image carries

Building is cheap once the tailored kernel is cached (a few seconds); the session builds
the seed's tree once for every test that needs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SEED_CONFIGURE = ("--with-stage1-flavors=kvm", "--with-stage1-kvm-hypervisors=lkvm,qemu")
BIN = Path("build/target/bin")


def clone(dest: Path) -> Path:
    if not shutil.which("git") or not shutil.which("make"):
        pytest.skip("needs git and make")
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    return dest


def build_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def configure_make(tree: Path, *configure: str) -> subprocess.CompletedProcess[str]:
    """Run configure then make; fail the test with both outputs if either fails."""
    out = []
    for argv in (["./configure", *configure], ["make"]):
        cp = subprocess.run(argv, cwd=tree, env=build_env(), capture_output=True, text=True,
                            timeout=1200, check=False)  # fmt: skip
        out.append(f"$ {' '.join(argv)}\n{cp.stdout}{cp.stderr}")
        assert cp.returncode == 0, "\n".join(out)
    return subprocess.CompletedProcess(["./configure", *configure], 0, "\n".join(out), "")


def kernel_release(aci: Path) -> str:
    with tarfile.open(aci) as tar:
        f = tar.extractfile("rootfs/kvm/build-info.json")
        assert f is not None
        return str(json.load(f)["kernel-release"])


@pytest.fixture(scope="session")
def seed_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone built as the seed says; its build/target/bin has rkt and the images."""
    tree = clone(tmp_path_factory.mktemp("seed") / "rkt")
    configure_make(tree, *SEED_CONFIGURE)
    return tree
