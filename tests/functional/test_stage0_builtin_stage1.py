"""`--stage1-name` with one of our own stage1 names works with an empty store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.images import ImageConfigSpec, busybox_rootfs, oci_layout

pytestmark = pytest.mark.root


def rkt(d: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyrkt", f"--dir={d}", *args],
                          capture_output=True, text=True, check=False, timeout=300)


def test_builtin_stage1_name_is_built_on_demand(tmp_path: Path) -> None:
    layout = tmp_path / "bb"
    oci_layout(layout, [busybox_rootfs(tmp_path / "root")],
               ImageConfigSpec(cmd=["/bin/sh"], env=["PATH=/bin"]), "latest")
    d = tmp_path / "rkt"
    cp = rkt(d, "run", "--insecure-options=image", "--net=host",
             "--stage1-name=coreos.com/rkt/stage1-fly", f"oci:{layout}",
             "--exec", "/bin/sh", "--", "-c", "echo fly-ok; exit 3")
    assert cp.returncode == 3, cp.stderr
    assert "fly-ok" in cp.stdout
    listed = rkt(d, "image", "list", "--no-legend")
    assert "coreos.com/rkt/stage1-fly" in listed.stdout
    # an unknown version of our name is not ours to build
    bad = rkt(d, "run", "--insecure-options=image",
              "--stage1-name=coreos.com/rkt/stage1-fly:9.9.9", f"oci:{layout}")
    assert bad.returncode == 254
    assert "stage1-fly:9.9.9" in bad.stderr


def test_default_stage1_is_reused_and_comes_back_after_image_rm(tmp_path: Path) -> None:
    layout = tmp_path / "bb"
    oci_layout(layout, [busybox_rootfs(tmp_path / "root")],
               ImageConfigSpec(cmd=["/bin/sh"], env=["PATH=/bin"]), "latest")
    d = tmp_path / "rkt"
    run = ("run", "--insecure-options=image", "--net=none", f"oci:{layout}",
           "--exec", "/bin/sh", "--", "-c", "echo ok; exit 4")

    def stage1_ids() -> list[str]:
        out = rkt(d, "image", "list", "--no-legend", "--fields=id,name").stdout
        return [ln.split()[0] for ln in out.splitlines() if "stage1-coreos" in ln]

    for _ in range(2):  # built on demand once, then taken from what stage0 remembers
        cp = rkt(d, *run)
        assert (cp.returncode, cp.stdout.strip()) == (4, "ok"), cp.stderr
    first = stage1_ids()
    assert len(first) == 1
    assert rkt(d, "gc", "--grace-period=0s").returncode == 0
    rm = rkt(d, "image", "rm", first[0])
    assert rm.returncode == 0, rm.stderr
    assert stage1_ids() == []
    cp = rkt(d, *run)  # what stage0 remembered is gone from the store: imported again
    assert (cp.returncode, cp.stdout.strip()) == (4, "ok"), cp.stderr
    assert stage1_ids() == first
