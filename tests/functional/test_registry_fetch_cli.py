"""`rkt fetch docker://...` against a real docker-registry, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from support.fixtures import ImageLayouts
from support.proxy import CuttingProxy
from support.registry import Auth, Registry

pytestmark = pytest.mark.registry
INSECURE = "--insecure-options=image,http"


def rkt(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyrkt", f"--dir={tmp_path / 'rkt'}", *args],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300, check=False)


def fetch_ok(tmp_path: Path, *args: str) -> str:
    cp = rkt(tmp_path, *args)
    assert cp.returncode == 0, cp.stderr
    image_id = cp.stdout.strip()
    assert image_id.startswith("sha512-") and len(image_id) == len("sha512-") + 32
    return image_id


def image_list(tmp_path: Path) -> str:
    cp = rkt(tmp_path, "image", "list", "--no-legend", "--full")
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def auth_d(dir_: Path, registry: str, user: str, password: str) -> Path:
    (dir_ / "auth.d").mkdir(parents=True, exist_ok=True)
    (dir_ / "auth.d" / "registry.json").write_text(json.dumps({
        "rktKind": "dockerAuth", "rktVersion": "v1", "registries": [registry],
        "credentials": {"user": user, "password": password}}))
    return dir_


def test_fetch_anonymous_needs_insecure_options(busybox_image: str, tmp_path: Path) -> None:
    cp = rkt(tmp_path, "fetch", busybox_image)
    assert cp.returncode == 254
    assert "--insecure-options=image" in cp.stderr
    cp = rkt(tmp_path, "--insecure-options=image", "fetch", busybox_image)
    assert cp.returncode == 254
    assert "--insecure-options=http" in cp.stderr
    image_id = fetch_ok(tmp_path, INSECURE, "fetch", busybox_image)
    assert image_id[len("sha512-"):] in image_list(tmp_path)
    # fetched once: a second fetch gives the same image from the store
    assert fetch_ok(tmp_path, INSECURE, "fetch", busybox_image) == image_id


def test_fetch_with_basic_auth_from_local_config(basic_auth_registry: Registry,
                                                 tmp_path: Path) -> None:
    reg = basic_auth_registry
    good = auth_d(tmp_path / "good", reg.host, reg.username, reg.password)
    bad = auth_d(tmp_path / "bad", reg.host, reg.username, "not-the-password")
    cp = rkt(tmp_path, f"--local-config={bad}", INSECURE, "fetch", reg.ref("busybox"))
    assert cp.returncode == 254
    assert f"registry {reg.host} denied access to busybox" in cp.stderr
    assert "Traceback" not in cp.stderr
    fetch_ok(tmp_path, f"--local-config={good}", INSECURE, "fetch", reg.ref("busybox"))


def test_fetch_with_token_auth_from_user_config(token_auth_registry: Registry,
                                                tmp_path: Path) -> None:
    reg = token_auth_registry
    user = auth_d(tmp_path / "user", reg.host, reg.username, reg.password)
    cp = rkt(tmp_path, f"--local-config={tmp_path / 'none'}", INSECURE, "fetch",
             reg.ref("busybox"))
    assert cp.returncode == 254
    assert "denied access" in cp.stderr
    fetch_ok(tmp_path, f"--local-config={tmp_path / 'none'}", f"--user-config={user}",
             INSECURE, "fetch", reg.ref("busybox"))


def _fill(make_registry: Callable[..., Registry], layouts: ImageLayouts) -> Registry:
    reg = make_registry(Auth.ANONYMOUS)
    reg.push(layouts.busybox, "latest", "busybox")
    reg.push(layouts.redis, "latest", "redis")
    return reg


def test_corrupt_blob_fails_and_leaves_store_as_it_was(
        make_registry: Callable[..., Registry], image_layouts: ImageLayouts,
        tmp_path: Path) -> None:
    reg = _fill(make_registry, image_layouts)
    fetch_ok(tmp_path, INSECURE, "fetch", reg.ref("busybox"))
    before = image_list(tmp_path)
    _, body = reg.manifest("redis", "latest", "application/vnd.oci.image.manifest.v1+json")
    layer = json.loads(body)["layers"][-1]["digest"]
    data = reg.blob_data_path(layer)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 3] ^= 0x55
    data.write_bytes(bytes(raw))
    cp = rkt(tmp_path, INSECURE, "fetch", reg.ref("redis"))
    assert cp.returncode == 254
    assert f"blob {layer}: digest mismatch" in cp.stderr
    assert image_list(tmp_path) == before


def test_truncated_download_fails_and_leaves_store_as_it_was(
        make_registry: Callable[..., Registry], image_layouts: ImageLayouts,
        tmp_path: Path) -> None:
    reg = _fill(make_registry, image_layouts)
    proxy = CuttingProxy(reg.host)
    try:
        fetch_ok(tmp_path, INSECURE, "fetch", reg.ref("busybox"))
        before = image_list(tmp_path)
        ref = f"docker://{proxy.host}/redis:latest"
        cp = rkt(tmp_path, INSECURE, "fetch", ref)
        assert cp.returncode == 254
        assert "download truncated" in cp.stderr and "blob sha256:" in cp.stderr
        assert image_list(tmp_path) == before
        proxy.cut_blobs = False
        fetch_ok(tmp_path, INSECURE, "fetch", ref)
        assert image_list(tmp_path) != before
    finally:
        proxy.stop()
