"""`rkt fetch docker://...` and `oci:` layouts end to end, against a real registry."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from support.fixtures import ImageLayouts
from support.images import ImageConfigSpec, oci_layout
from support.registry import Registry

pytestmark = pytest.mark.registry


def rkt(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyrkt", f"--dir={data}", *args],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


def insecure_fetch(data: Path, *refs: str) -> subprocess.CompletedProcess[str]:
    return rkt(data, "--insecure-options=image,http", "fetch", "--full", *refs)


def test_docker_image_needs_insecure_options_image(tmp_path: Path, busybox_image: str) -> None:
    cp = rkt(tmp_path / "data", "--insecure-options=http", "fetch", busybox_image)
    assert cp.returncode == 254
    assert "signature verification for docker images is not supported " \
        "(try --insecure-options=image)" in cp.stderr  # fmt: skip


def test_fetch_busybox_converts_and_renders(tmp_path: Path, busybox_image: str,
                                            registry: Registry) -> None:  # fmt: skip
    data = tmp_path / "data"
    cp = rkt(data, "--insecure-options=image,http", "fetch", busybox_image)
    assert cp.returncode == 0, cp.stderr
    short = cp.stdout.strip()
    assert short.startswith("sha512-") and len(short) == len("sha512-") + 32

    host = busybox_image.removeprefix("docker://").split("/")[0]
    listed = rkt(data, "image", "list", "--no-legend", "--fields=name").stdout.split()
    assert listed == [f"{host.replace(':', '_')}/busybox:latest"]

    manifest = json.loads(rkt(data, "image", "cat-manifest", short).stdout)
    assert manifest["app"]["exec"] == ["/bin/sh"]
    assert {"name": "PATH", "value": "/usr/bin:/bin"} in manifest["app"]["environment"]
    assert {"name": "os", "value": "linux"} in manifest["labels"]
    assert {"name": "arch", "value": "amd64"} in manifest["labels"]

    out = tmp_path / "rootfs"
    assert rkt(data, "image", "render", "--rootfs-only", short, str(out)).returncode == 0
    assert (out / "bin" / "busybox").is_file()
    assert rkt(data, "image", "verify", short).returncode == 0

    # the default pull policy uses the store: same ID, no second download
    again = rkt(data, "--insecure-options=image,http", "--debug", "fetch", busybox_image)
    assert again.stdout.strip() == short
    assert f"image: using image from local store for url {busybox_image}" in again.stderr

    # export gives an ACI that rkt fetch re-imports
    aci = tmp_path / "busybox.aci"
    assert rkt(data, "image", "export", short, str(aci)).returncode == 0
    reimported = rkt(data, "--insecure-options=image", "fetch", str(aci))
    assert reimported.returncode == 0, reimported.stderr
    out2 = tmp_path / "rootfs2"
    rkt(data, "image", "render", "--rootfs-only", reimported.stdout.strip(), str(out2))
    assert (out2 / "bin" / "busybox").read_bytes() == (out / "bin" / "busybox").read_bytes()


def test_redis_ports_volumes_workdir(tmp_path: Path, redis_image: str) -> None:
    data = tmp_path / "data"
    cp = insecure_fetch(data, redis_image)
    assert cp.returncode == 0, cp.stderr
    app = json.loads(rkt(data, "image", "cat-manifest", cp.stdout.strip()).stdout)["app"]
    assert app["exec"] == ["/usr/bin/redis-server", "--protected-mode", "no"]
    assert app["workingDirectory"] == "/data"
    assert app["ports"] == [{"name": "6379-tcp", "protocol": "tcp", "port": 6379, "count": 1,
                             "socketActivated": False}]  # fmt: skip
    assert app["mountPoints"] == [{"name": "volume-data", "path": "/data", "readOnly": False}]
    assert (data / "cas" / "trees" / cp.stdout.strip() / "rootfs" / "usr" / "bin" /
            "redis-server").is_file()  # fmt: skip


def test_eight_concurrent_docker_fetches_store_once(tmp_path: Path, busybox_image: str) -> None:
    data = tmp_path / "data"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pyrkt", f"--dir={data}", "--insecure-options=image,http",
             "fetch", busybox_image],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(8)
    ]
    results = [(*p.communicate(timeout=300), p.returncode) for p in procs]
    assert all(rc == 0 for _, _, rc in results), results
    assert len({out for out, _, _ in results}) == 1
    assert len(rkt(data, "image", "list", "--no-legend").stdout.splitlines()) == 1
    assert len(list((data / "cas" / "trees").iterdir())) == 1


def test_whiteouts_and_zstd_layers_through_the_registry(
    tmp_path: Path, registry: Registry
) -> None:
    layout = tmp_path / "layout"
    oci_layout(
        layout,
        [
            {"etc/keep": b"k", "etc/gone": b"g", "opt/old/a": b"a", "opt/old/b": b"b"},
            {"etc/.wh.gone": b"", "opt/old/.wh..wh..opq": b"", "opt/old/new": b"n"},
        ],
        ImageConfigSpec(cmd=["/bin/true"]),
        "wh",
        compression=["zstd", "gzip"],
    )
    registry.push(layout, "wh", "whiteouts")
    data = tmp_path / "data"
    cp = insecure_fetch(data, registry.ref("whiteouts", "wh"))
    assert cp.returncode == 0, cp.stderr
    rootfs = data / "cas" / "trees" / cp.stdout.strip() / "rootfs"
    assert sorted(p.name for p in (rootfs / "etc").iterdir()) == ["keep"]
    assert sorted(p.name for p in (rootfs / "opt" / "old").iterdir()) == ["new"]

    # the same image from the OCI layout directly (pyrkt extension)
    cp = rkt(data, "fetch", f"oci:{layout}:wh")
    assert cp.returncode == 0, cp.stderr
    ids = rkt(data, "image", "list", "--full", "--no-legend", "--fields=id").stdout.split()
    assert len(ids) == 2  # same layers, another name (the layout's): another image
    rootfs = data / "cas" / "trees" / next(i for i in ids if i.startswith(cp.stdout.strip()))
    assert (rootfs / "rootfs" / "etc" / "keep").is_file()
    assert not (rootfs / "rootfs" / "etc" / "gone").exists()


def test_oci_layout_fetch(tmp_path: Path, image_layouts: ImageLayouts) -> None:
    data = tmp_path / "data"
    cp = rkt(data, "fetch", "--full", f"oci:{image_layouts.busybox}:latest")
    assert cp.returncode == 0, cp.stderr
    tree = data / "cas" / "trees" / cp.stdout.strip()
    assert (tree / "rootfs" / "bin" / "busybox").is_file()
    missing = rkt(data, "fetch", f"oci:{image_layouts.busybox}:nope")
    assert missing.returncode == 254 and "no image tagged 'nope'" in missing.stderr


def test_pull_policies(tmp_path: Path, make_registry: Callable[..., Registry]) -> None:
    reg = make_registry()
    layout = tmp_path / "layout"
    oci_layout(layout, [{"etc/v": b"1"}], ImageConfigSpec(cmd=["/bin/true"]), "latest")
    reg.push(layout, "latest", "app")
    data = tmp_path / "data"
    ref = reg.ref("app")

    never = rkt(data, "--insecure-options=image,http", "fetch", "--pull-policy=never", ref)
    assert never.returncode == 254 and "not in the store" in never.stderr
    first = insecure_fetch(data, ref).stdout.strip()
    assert rkt(data, "--insecure-options=image,http", "fetch", "--full",
               "--pull-policy=never", ref).stdout.strip() == first  # fmt: skip

    oci_layout(layout, [{"etc/v": b"2"}], ImageConfigSpec(cmd=["/bin/true"]), "latest")
    reg.push(layout, "latest", "app")
    assert insecure_fetch(data, ref).stdout.strip() == first  # new: the store's copy
    updated = rkt(data, "--insecure-options=image,http", "fetch", "--full",
                  "--pull-policy=update", ref).stdout.strip()  # fmt: skip
    assert updated != first
    assert (data / "cas" / "trees" / updated / "rootfs" / "etc" / "v").read_bytes() == b"2"
    assert insecure_fetch(data, ref).stdout.strip() == updated
    bad = rkt(data, "fetch", "--pull-policy=sometimes", ref)
    assert bad.returncode == 254 and "--pull-policy" in bad.stderr


def test_fetch_killed_while_extracting_leaves_nothing_visible(
    tmp_path: Path, make_registry: Callable[..., Registry]
) -> None:
    import signal
    import time

    from support.images import bulk_layout

    reg = make_registry()
    bulk_layout(tmp_path / "bulk", total_mb=24, layers=3)
    reg.push(tmp_path / "bulk", "latest", "bulk")
    for attempt in range(5):  # the kill must land while a layer is being applied
        data = tmp_path / f"data{attempt}"
        p = subprocess.Popen(
            [sys.executable, "-m", "pyrkt", f"--dir={data}", "--insecure-options=image,http",
             "fetch", reg.ref("bulk")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and p.poll() is None:
                if list((data / "cas" / "tmp").glob("layers-*/rootfs/data")):
                    break  # a data layer is being applied: kill it now
                time.sleep(0.005)
        finally:
            p.send_signal(signal.SIGKILL)
            p.communicate()
        if p.returncode == -signal.SIGKILL:
            break
    assert p.returncode == -signal.SIGKILL, "every fetch finished before it could be killed"
    assert rkt(data, "image", "list", "--no-legend").stdout == ""
    assert not any((data / "cas" / "trees").iterdir())
    assert any((data / "cas" / "tmp").iterdir())  # the half-applied staging, invisible

    again = insecure_fetch(data, reg.ref("bulk"))
    assert again.returncode == 0, again.stderr
    assert len(rkt(data, "image", "list", "--no-legend").stdout.splitlines()) == 1
    assert rkt(data, "image", "gc").returncode == 0
    assert [p.name for p in (data / "cas" / "tmp").iterdir()] == []
