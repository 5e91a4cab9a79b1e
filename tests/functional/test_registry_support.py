"""The shared test registry and test images work as the rest of the suite expects."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from support.fixtures import ImageLayouts
from support.registry import Registry

ACCEPT = "application/vnd.oci.image.manifest.v1+json"


def _get(url: str, auth: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers={"Accept": ACCEPT})
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_layouts_have_tagged_images(image_layouts: ImageLayouts) -> None:
    for layout in (image_layouts.busybox, image_layouts.redis):
        index = json.loads((layout / "index.json").read_text())
        names = [m["annotations"]["org.opencontainers.image.ref.name"]
                 for m in index["manifests"]]
        assert names == ["latest"]


@pytest.mark.registry
def test_anonymous_registry_serves_pushed_images(registry: Registry, busybox_image: str,
                                                 redis_image: str) -> None:
    assert busybox_image == f"docker://{registry.host}/busybox:latest"
    code, _, body = _get(f"http://{registry.host}/v2/redis/manifests/latest")
    assert code == 200
    manifest = json.loads(body)
    assert len(manifest["layers"]) == 2
    cfg_digest = manifest["config"]["digest"]
    code, _, body = _get(f"http://{registry.host}/v2/redis/blobs/{cfg_digest}")
    config = json.loads(body)["config"]
    assert config["Entrypoint"] == ["/usr/bin/redis-server"]
    assert config["ExposedPorts"] == {"6379/tcp": {}}


@pytest.mark.registry
def test_basic_auth_registry_demands_credentials(basic_auth_registry: Registry) -> None:
    url = f"http://{basic_auth_registry.host}/v2/busybox/manifests/latest"
    code, headers, _ = _get(url)
    assert code == 401
    assert headers["Www-Authenticate"].startswith("Basic")
    creds = f"{basic_auth_registry.username}:{basic_auth_registry.password}"
    code, _, _ = _get(url, "Basic " + base64.b64encode(creds.encode()).decode())
    assert code == 200


@pytest.mark.registry
def test_token_auth_registry_issues_bearer_tokens(token_auth_registry: Registry) -> None:
    url = f"http://{token_auth_registry.host}/v2/busybox/manifests/latest"
    code, headers, _ = _get(url)
    assert code == 401
    challenge = headers["Www-Authenticate"]
    assert challenge.startswith("Bearer realm=")
    server = token_auth_registry.token_server
    assert server is not None
    creds = f"{token_auth_registry.username}:{token_auth_registry.password}"
    basic = "Basic " + base64.b64encode(creds.encode()).decode()
    token_url = f"{server.realm}?service=pyrkt-test-registry&scope=repository:busybox:pull"
    code, _, body = _get(token_url, basic)
    assert code == 200
    code, _, _ = _get(url, "Bearer " + json.loads(body)["token"])
    assert code == 200
    code, _, _ = _get(token_url, "Basic " + base64.b64encode(b"alice:nope").decode())
    assert code == 401
