"""`rkt image gc` and `rkt gc` remove the kvm stage1's cached empty disk layers (qcow2
over an image's ext4 image: stage1/kvm/disks.py new_layer) once their image is gone or
was built again, and keep the others."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyrkt.stage1.kvm import disks

pytestmark = pytest.mark.skipif(shutil.which(disks.QEMU_IMG) is None, reason="no qemu-img")


def rkt(d: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyrkt", f"--dir={d}", *args],
                          capture_output=True, text=True, check=False)


def layer_over(base: Path, cache: Path) -> Path:
    disks.new_layer(cache.parent / "pod.qcow2", base, cache)
    (layer,) = [p for p in cache.glob("layer-*.qcow2")
                if disks.backing_of(p) == base]
    return layer


@pytest.mark.root
def test_image_gc_removes_layers_whose_image_is_gone(tmp_path: Path) -> None:
    d = tmp_path / "rkt"
    cache = d / "cache" / disks.CACHE_DIR
    kept_base, gone_base = tmp_path / "kept.ext4", tmp_path / "gone.ext4"
    for b in (kept_base, gone_base):
        b.write_bytes(b"\0" * 65536)
    kept, gone = layer_over(kept_base, cache), layer_over(gone_base, cache)
    cp = rkt(d, "image", "gc")
    assert cp.returncode == 0, cp.stderr
    assert kept.is_file() and gone.is_file()  # both images still there
    gone_base.unlink()
    cp = rkt(d, "image", "gc")
    assert cp.returncode == 0, cp.stderr
    assert f'removed unreferenced store data "{gone}"' in cp.stdout
    assert kept.is_file() and not gone.exists()


@pytest.mark.root
def test_gc_removes_a_layer_older_than_its_rebuilt_image(tmp_path: Path) -> None:
    d = tmp_path / "rkt"
    cache = d / "cache" / disks.CACHE_DIR
    base = tmp_path / "base.ext4"
    base.write_bytes(b"\0" * 65536)
    old = layer_over(base, cache)
    st = old.stat()
    os.utime(base, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # built again, later
    cp = rkt(d, "gc", "--grace-period=0s")
    assert cp.returncode == 0, cp.stderr
    assert not old.exists()
    assert layer_over(base, cache).is_file()  # the next pod makes a new one


def test_backing_of_reads_only_a_qcow2_header(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"QFI\xfb" + b"\xff" * 16)  # a backing name far past the header
    assert disks.backing_of(junk) is None
    junk.write_bytes(b"not a qcow2")
    assert disks.backing_of(junk) is None
