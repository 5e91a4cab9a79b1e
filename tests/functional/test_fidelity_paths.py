"""rkt's `paths` configuration (`paths.d`, key `data`): where pods and images go when
`--dir` is not given; `--dir` still wins."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyrkt.linux.cgroup import PodCgroups
from support.images import busybox_rootfs, write_aci

pytestmark = pytest.mark.root

MANIFEST = {
    "acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/paths-busybox",
    "labels": [{"name": "arch", "value": "amd64"}, {"name": "os", "value": "linux"}],
    "app": {"exec": ["/bin/true"], "user": "0", "group": "0"},
}  # fmt: skip


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[tuple[list[str], Path]]:
    """rkt's config-dir flags (an empty system dir, a local dir naming a data dir)."""
    data = tmp_path / "configured-data"
    local = tmp_path / "local"
    (local / "paths.d").mkdir(parents=True)
    (local / "paths.d" / "paths.json").write_text(
        json.dumps({"rktKind": "paths", "rktVersion": "v1", "data": str(data)}))
    (tmp_path / "system").mkdir()
    flags = [f"--system-config={tmp_path / 'system'}", f"--local-config={local}",
             f"--user-config={tmp_path / 'user'}"]
    yield flags, data
    for d in (data, tmp_path / "flag-data"):
        for pod in (d / "pods").glob("*/*"):
            PodCgroups(pod.name).destroy()


def rkt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyrkt", *args], capture_output=True,
                          text=True, timeout=180, stdin=subprocess.DEVNULL)


def test_local_paths_config_moves_pods_and_images(configured: tuple[list[str], Path],
                                                  tmp_path: Path) -> None:
    flags, data = configured
    aci = write_aci(busybox_rootfs(tmp_path / "aci" / "rootfs").parent, MANIFEST, "bb.aci")
    uuid_file = tmp_path / "uuid"
    r = rkt(*flags, "--insecure-options=image", "run", "--net=none",
            f"--uuid-file-save={uuid_file}", str(aci))
    assert r.returncode == 0, r.stderr
    uuid = uuid_file.read_text().strip()
    assert [p.name for p in (data / "pods").glob("*/*")] == [uuid]
    assert any((data / "cas").rglob("*")), "no image in the configured data dir"

    listed = rkt(*flags, "list", "--no-legend", "--full")
    assert listed.returncode == 0, listed.stderr
    assert uuid in listed.stdout
    images = rkt(*flags, "image", "list", "--no-legend")
    assert "example.com/paths-busybox" in images.stdout, images.stdout + images.stderr

    shown = rkt(*flags, "config")
    paths = [e for e in json.loads(shown.stdout)["stage0"] if e["rktKind"] == "paths"]
    assert paths[0]["data"] == str(data)

    # --dir takes precedence over the configuration
    other = rkt(*flags, f"--dir={tmp_path / 'flag-data'}", "list", "--no-legend")
    assert other.returncode == 0, other.stderr
    assert uuid not in other.stdout


def test_paths_stage1_images_is_where_stage1_from_dir_looks(
        configured: tuple[list[str], Path], tmp_path: Path) -> None:
    from pyrkt.stage1.build.aci import Flavor, build_stage1_aci

    flags, _ = configured
    images = tmp_path / "stage1-images"
    fly = build_stage1_aci(Flavor.FLY, images)
    local = Path(flags[1].partition("=")[2])
    (local / "paths.d" / "stage1.json").write_text(
        json.dumps({"rktKind": "paths", "rktVersion": "v1", "stage1-images": str(images)}))
    aci = write_aci(busybox_rootfs(tmp_path / "aci" / "rootfs").parent, MANIFEST, "bb.aci")
    r = rkt(*flags, "--insecure-options=image", "run", f"--stage1-from-dir={fly.name}",
            str(aci), "--exec", "/bin/sh", "--", "-c", "echo from-fly")
    assert (r.returncode, r.stdout) == (0, "from-fly\n"), r.stderr
    shown = rkt(*flags, "config")
    paths = [e for e in json.loads(shown.stdout)["stage0"] if e["rktKind"] == "paths"]
    assert paths[0]["stage1-images"] == str(images)
    missing = rkt(*flags, "--insecure-options=image", "run", "--stage1-from-dir=nope.aci",
                  str(aci))
    assert missing.returncode == 254 and str(images / "nope.aci") in missing.stderr
