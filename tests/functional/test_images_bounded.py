"""Bounded fetches, against a real registry: a gzip bomb stops at the layer cap, an image
over the image cap is refused, a store without room says so before and while fetching,
and a fetch killed midway leaves nothing (SIGTERM: at once; SIGKILL: removed by the next
fetch, which leaves a concurrent fetch's files alone). Each case also checks that the
store holds nothing of the failed image: no image, no tree, no staging.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.images import (
    BULK_CONFIG,
    Compression,
    RawLayer,
    busybox_rootfs,
    compress,
    gzip_bomb,
    oci_layout,
    raw_layout,
    tar_dict,
    tar_directory,
    write_aci,
)
from support.proxy import CuttingProxy
from support.registry import Registry

MIB = 1 << 20
MakeTmpfs = Callable[[int], Path]
BIG_MIB = 16  # the slow image's second layer: random bytes, so it stays this big


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry with: `bomb` (one 2 MiB gzip layer of a 2 GiB file of zeros),
    `twelve` (two compressible 6 MiB layers), `big` (busybox, then BIG_MIB MiB of
    random bytes) and `busybox`."""
    base = tmp_path_factory.mktemp("bounded")
    r = Registry(base / "registry").start()
    try:
        root = busybox_rootfs(base / "busybox-root")
        oci_layout(base / "busybox", [root], BULK_CONFIG, "latest")
        r.push(base / "busybox", "latest", "busybox")
        raw_layout(base / "bomb", [gzip_bomb(2 << 30)], BULK_CONFIG, "latest")
        r.push(base / "bomb", "latest", "bomb")
        text = b"".join(b"line %d of a compressible layer\n" % i for i in range(200_000))
        layers = [{f"data/{n}": text[: 6 * MIB]} for n in ("a", "b")]
        oci_layout(base / "twelve", layers, BULK_CONFIG, "latest")
        r.push(base / "twelve", "latest", "twelve")
        noise = random.Random(7).randbytes(BIG_MIB * MIB)
        raw = [RawLayer.of(tar_directory(root), Compression.GZIP),
               RawLayer.of(tar_dict({"data/noise": noise}), Compression.NONE)]
        raw_layout(base / "big", raw, BULK_CONFIG, "latest")
        r.push(base / "big", "latest", "big")
    except BaseException:
        r.stop()
        raise
    yield r
    r.stop()


class Rkt:
    def __init__(self, data: Path, **env: str) -> None:
        self.dir = data
        self.env = {**os.environ, **env}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pyrkt", f"--dir={self.dir}",
                "--insecure-options=image,http", *args]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=300, env=self.env,
                              check=False)

    def start_fetch(self, ref: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv("fetch", ref), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env)

    @property
    def staging(self) -> list[str]:
        tmp = self.dir / "cas" / "tmp"
        return sorted(os.listdir(tmp)) if tmp.is_dir() else []

    def images(self) -> list[str]:
        cp = self("image", "list", "--no-legend", "--fields=name")
        assert cp.returncode == 0, cp.stderr
        return cp.stdout.split()

    def assert_nothing_of(self, name: str) -> None:
        assert self.staging == []
        trees = self.dir / "cas" / "trees"
        assert not trees.is_dir() or os.listdir(trees) == []
        assert not any(name in i for i in self.images())


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[MakeTmpfs]:
    """tmpfs(mib) -> a fresh tmpfs of that size, unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def make(mib: int) -> Path:
        d = tmp_path / f"tmpfs{len(mounted)}"
        d.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(d)],
                       check=True)
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        subprocess.run(["umount", str(d)], check=False)


@pytest.mark.registry
@pytest.mark.root
def test_gzip_bomb_stops_at_the_layer_cap(reg: Registry, tmpfs: MakeTmpfs) -> None:
    # 128 MiB of room: had the cap not stopped it, the store would have filled up
    rkt = Rkt(tmpfs(128), PYRKT_MAX_LAYER_SIZE="64Mi")
    cp = rkt("fetch", reg.ref("bomb"))
    assert cp.returncode == 254, cp.stderr
    last = cp.stderr.splitlines()[-1]  # after the progress lines: one line, no traceback
    assert last.startswith(f"fetch: {reg.ref('bomb')}: layer sha256:") and last.endswith(
        "is larger than 64.0 MiB uncompressed, the cap on a layer's size (set "
        "PYRKT_MAX_LAYER_SIZE to raise it)"), cp.stderr
    assert "Traceback" not in cp.stderr
    rkt.assert_nothing_of("bomb")


@pytest.mark.registry
@pytest.mark.root
def test_gzip_bomb_stops_when_the_store_runs_out_of_room(reg: Registry,
                                                         tmpfs: MakeTmpfs) -> None:
    store = tmpfs(96)
    rkt = Rkt(store)  # the default caps (8 GiB a layer) let 2 GiB through: space stops it
    cp = rkt("fetch", reg.ref("bomb"))
    assert cp.returncode == 254, cp.stderr
    assert f"not enough free space in the image store {store}/cas" in cp.stderr
    rkt.assert_nothing_of("bomb")
    # and the store works: a small image still fits
    assert rkt("fetch", reg.ref("busybox")).returncode == 0


@pytest.mark.registry
def test_image_over_the_image_cap(reg: Registry, tmp_path: Path) -> None:
    rkt = Rkt(tmp_path / "rkt", PYRKT_MAX_IMAGE_SIZE="10Mi")
    cp = rkt("fetch", reg.ref("twelve"))
    assert cp.returncode == 254, cp.stderr
    assert f"{reg.ref('twelve')}: it is larger than 10.0 MiB uncompressed, the cap on an " \
        "image's size (set PYRKT_MAX_IMAGE_SIZE to raise it)" in cp.stderr
    rkt.assert_nothing_of("twelve")
    rkt.env["PYRKT_MAX_IMAGE_SIZE"] = "13Mi"  # each layer fits, and so does the sum
    cp = rkt("fetch", reg.ref("twelve"))
    assert cp.returncode == 0, cp.stderr


@pytest.mark.registry
def test_bad_cap_setting_is_one_line(reg: Registry, tmp_path: Path) -> None:
    cp = Rkt(tmp_path / "rkt", PYRKT_MAX_LAYER_SIZE="lots")("fetch", reg.ref("busybox"))
    assert cp.returncode == 254
    assert "invalid PYRKT_MAX_LAYER_SIZE='lots'" in cp.stderr and "Traceback" not in cp.stderr


@pytest.mark.registry
@pytest.mark.root
def test_no_room_for_the_download(reg: Registry, tmpfs: MakeTmpfs) -> None:
    store = tmpfs(12)
    rkt = Rkt(store)
    cp = rkt("fetch", reg.ref("big"))
    assert cp.returncode == 254, cp.stderr
    m = re.search(f"not enough free space in the image store {store}/cas for "
                  f"{reg.ref('big')}: it needs at least ([0-9.]+) MiB, ([0-9.]+) MiB is free",
                  cp.stderr)
    assert m and float(m[1]) > BIG_MIB and float(m[2]) <= 12, cp.stderr
    rkt.assert_nothing_of("big")


@pytest.fixture
def slow(reg: Registry) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(reg.host)
    proxy.cut_blobs = False
    proxy.rate = 2 * MIB  # the big layer takes ~8 s
    yield proxy
    proxy.stop()


def _midway(rkt: Rkt, p: subprocess.Popen[str], known: list[str] | None = None) -> list[str]:
    """Wait until the first layer is applied in a new staging dir (not in `known`), the
    second layer still downloading; the staging entries then."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert p.poll() is None, p.communicate()
        tmp = rkt.dir / "cas" / "tmp"
        if any((tmp / n / "rootfs/bin/busybox").exists() for n in rkt.staging
               if n not in (known or [])):
            return rkt.staging
        time.sleep(0.05)
    raise AssertionError("the fetch never got midway")


@pytest.mark.registry
def test_sigterm_midway_leaves_nothing(reg: Registry, slow: CuttingProxy,
                                       tmp_path: Path) -> None:
    rkt = Rkt(tmp_path / "rkt")
    p = rkt.start_fetch(f"docker://{slow.host}/big:latest")
    assert any(n.startswith("layers-") for n in _midway(rkt, p))
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGTERM, err  # dies of the signal, as without cleanup
    assert "Traceback" not in err
    rkt.assert_nothing_of("big")


@pytest.mark.registry
def test_sigkill_leftovers_go_with_the_next_fetch_not_a_running_ones(
        reg: Registry, slow: CuttingProxy, tmp_path: Path) -> None:
    rkt = Rkt(tmp_path / "rkt")
    killed = rkt.start_fetch(f"docker://{slow.host}/big:latest")
    stale = _midway(rkt, killed)
    killed.kill()
    killed.communicate()
    assert rkt.staging == stale and stale  # SIGKILL: nothing could clean up
    running = rkt.start_fetch(f"docker://{slow.host}/big:latest")  # the next fetch
    live = _midway(rkt, running, stale)
    assert live and not set(live) & set(stale)  # it removed the stale ones
    cp = rkt("fetch", reg.ref("busybox"))  # a fetch while another runs
    assert cp.returncode == 0, cp.stderr
    assert rkt.staging == live  # the running fetch's staging is left alone
    _, err = running.communicate(timeout=120)
    assert running.returncode == 0, err
    assert rkt.staging == []
    assert sorted(n.rsplit("/", 1)[-1] for n in rkt.images()) == ["big:latest",
                                                                  "busybox:latest"]


@pytest.mark.root
def test_aci_over_the_image_cap(tmp_path: Path) -> None:
    """An ACI is one layer: its uncompressed tar is metered too (here gzip'd, 4 MiB of
    zeros in a few KiB)."""
    work = tmp_path / "aci"
    (work / "rootfs").mkdir(parents=True)
    (work / "rootfs" / "zeros").write_bytes(bytes(4 * MIB))
    aci = write_aci(work, {"acKind": "ImageManifest", "acVersion": "0.8.11",
                           "name": "example.com/zeros"}, "zeros.aci")
    gz = tmp_path / "zeros.aci.gz"
    gz.write_bytes(compress(aci.read_bytes(), Compression.GZIP))
    rkt = Rkt(tmp_path / "rkt", PYRKT_MAX_IMAGE_SIZE="2Mi")
    cp = rkt("fetch", str(gz))
    assert cp.returncode == 254, cp.stderr
    assert f"{gz}: it is larger than 2.0 MiB uncompressed, the cap on an image's size" \
        in cp.stderr
    rkt.assert_nothing_of("zeros")
    assert not (rkt.dir / "cas" / "blobs").is_dir() or not os.listdir(rkt.dir / "cas/blobs")
    rkt.env.pop("PYRKT_MAX_IMAGE_SIZE")
    assert rkt("fetch", str(gz)).returncode == 0
