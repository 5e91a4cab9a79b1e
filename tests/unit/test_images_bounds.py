"""The image store's bounds without a registry: the layer cap stops a gzip bomb before it
writes past the cap, the image cap adds layers up, and the sweep of abandoned staging
spares what a live process holds."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from pyrkt.image.layers import apply_layer
from pyrkt.image.limits import Budget, Limits, TooLarge
from pyrkt.image.store import Store
from support.images import Compression, compress, gzip_bomb, tar_dict

MIB = 1 << 20


def test_gzip_bomb_stops_at_the_cap_having_written_no_more(tmp_path: Path) -> None:
    bomb = gzip_bomb(1 << 30)  # 1 GiB of zeros in ~1 MiB
    root = tmp_path / "root"
    root.mkdir()
    budget = Budget(tmp_path, "bomb", Limits(max_layer=16 * MIB, max_image=0))
    with pytest.raises(TooLarge, match=r"bomb: layer L is larger than 16\.0 MiB uncompressed"):
        apply_layer(io.BytesIO(bomb.blob), root, budget=budget, layer="L")
    written = (root / "zeros").stat().st_size
    assert 0 < written <= 16 * MIB
    assert budget.total <= 16 * MIB + MIB  # the chunk that crossed was never handed on


def test_image_cap_counts_every_layer(tmp_path: Path) -> None:
    layer = compress(tar_dict({"f": bytes(3 * MIB)}), Compression.GZIP)
    root = tmp_path / "root"
    root.mkdir()
    budget = Budget(tmp_path, "img", Limits(max_layer=4 * MIB, max_image=7 * MIB))
    for _ in range(2):
        apply_layer(io.BytesIO(layer), root, budget=budget, layer="x")
    with pytest.raises(TooLarge, match=r"img: it is larger than 7\.0 MiB uncompressed, the "
                       "cap on an image's size"):
        apply_layer(io.BytesIO(layer), root, budget=budget, layer="x")


def test_compressed_sizes_alone_over_a_cap_are_refused_before_download() -> None:
    caps = Limits(max_layer=10 * MIB, max_image=20 * MIB)
    caps.check_compressed("x", [10 * MIB, 9 * MIB])  # incompressible data may be this big
    with pytest.raises(TooLarge, match="a layer is larger"):
        caps.check_compressed("x", [12 * MIB])
    with pytest.raises(TooLarge, match=r"it is larger than 20\.0 MiB"):
        caps.check_compressed("x", [8 * MIB, 8 * MIB, 8 * MIB])
    Limits(0, 0).check_compressed("x", [1 << 40])  # 0: no cap


def test_sweep_removes_abandoned_staging_only(tmp_path: Path) -> None:
    live_store, sweeper = Store(tmp_path), Store(tmp_path)
    tmp = live_store.tmp
    with live_store.staging("layers") as live:
        (live / "rootfs").mkdir()
        (tmp / "pull-1-dead").mkdir()  # a SIGKILLed fetch: its lock, nobody holding it
        (tmp / "pull-1-dead" / "blob.part").write_bytes(b"x" * 100)
        (tmp / "pull-1-dead.lock").touch()
        (tmp / "layers-2-dead").mkdir()  # killed before its lock file was even there
        (tmp / "aci-3-gone.lock").touch()  # killed between removing its dir and its lock
        removed = sweeper.sweep_staging()  # its own fds: flocks conflict as across processes
        assert sorted(Path(p).name for p in removed) == ["layers-2-dead", "pull-1-dead"]
        assert sorted(os.listdir(tmp)) == [live.name, live.name + ".lock"]
        assert (live / "rootfs").is_dir()
    assert os.listdir(tmp) == []
