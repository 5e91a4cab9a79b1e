"""pytest fixtures shared across the suite (registered from tests/conftest.py).

Test images (built once per session from Debian packages, see support.images):
    image_layouts        ImageLayouts(busybox=Path, redis=Path): OCI layouts, tag "latest"
Registries (Debian docker-registry on 127.0.0.1, filled by skopeo, see support.registry):
    registry             anonymous; busybox:latest and redis:latest pushed (session)
    busybox_image        "docker://127.0.0.1:PORT/busybox:latest"
    redis_image          "docker://127.0.0.1:PORT/redis:latest"
    basic_auth_registry  htpasswd auth (.username / .password); busybox pushed (session)
    token_auth_registry  bearer-token auth, token server in-process; busybox pushed
    make_registry        make_registry(auth, tls=False): a private, function-scoped
                         Registry (to corrupt it; tls=True serves https, self-signed)
Tests using the registries must carry `@pytest.mark.registry`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.images import ImageConfigSpec, busybox_rootfs, oci_layout, redis_rootfs
from support.registry import Auth, Registry

BUSYBOX_CONFIG = ImageConfigSpec(cmd=["/bin/sh"], env=["PATH=/usr/bin:/bin"])
REDIS_CONFIG = ImageConfigSpec(
    entrypoint=["/usr/bin/redis-server"],
    cmd=["--protected-mode", "no"],
    env=["PATH=/usr/bin:/bin"],
    working_dir="/data",
    exposed_ports=["6379/tcp"],
    volumes=["/data"],
)


@dataclass(frozen=True)
class ImageLayouts:
    busybox: Path
    redis: Path


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


@pytest.fixture(scope="session")
def image_layouts(tmp_path_factory: pytest.TempPathFactory) -> ImageLayouts:
    base = tmp_path_factory.mktemp("images")
    busybox = base / "busybox-oci"
    oci_layout(busybox, [busybox_rootfs(base / "busybox-root")], BUSYBOX_CONFIG, "latest")
    redis = base / "redis-oci"
    # Two layers: busybox (a shell for debugging) then redis on top.
    oci_layout(redis, [base / "busybox-root", redis_rootfs(base / "redis-root")],
               REDIS_CONFIG, "latest")
    return ImageLayouts(busybox=busybox, redis=redis)


def _started(workdir: Path, auth: Auth, layouts: ImageLayouts,
             repos: tuple[str, ...]) -> Registry:
    _need("docker-registry", "skopeo")
    reg = Registry(workdir, auth=auth).start()
    try:
        for repo in repos:
            reg.push(getattr(layouts, repo), "latest", repo)
    except BaseException:
        reg.stop()
        raise
    return reg


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory,
             image_layouts: ImageLayouts) -> Iterator[Registry]:
    reg = _started(tmp_path_factory.mktemp("registry"), Auth.ANONYMOUS, image_layouts,
                   ("busybox", "redis"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def busybox_image(registry: Registry) -> str:
    return registry.ref("busybox")


@pytest.fixture(scope="session")
def redis_image(registry: Registry) -> str:
    return registry.ref("redis")


@pytest.fixture(scope="session")
def basic_auth_registry(tmp_path_factory: pytest.TempPathFactory,
                        image_layouts: ImageLayouts) -> Iterator[Registry]:
    reg = _started(tmp_path_factory.mktemp("registry-basic"), Auth.BASIC, image_layouts,
                   ("busybox",))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_auth_registry(tmp_path_factory: pytest.TempPathFactory,
                        image_layouts: ImageLayouts) -> Iterator[Registry]:
    reg = _started(tmp_path_factory.mktemp("registry-token"), Auth.TOKEN, image_layouts,
                   ("busybox",))
    yield reg
    reg.stop()


@pytest.fixture
def make_registry(tmp_path: Path) -> Iterator[Callable[..., Registry]]:
    """make_registry(auth=Auth.ANONYMOUS) -> a started, empty Registry for this test."""
    made: list[Registry] = []

    def make(auth: Auth = Auth.ANONYMOUS, *, tls: bool = False) -> Registry:
        _need("docker-registry", "skopeo")
        reg = Registry(tmp_path / f"registry-{len(made)}", auth=auth, tls=tls)
        made.append(reg)
        return reg.start()

    yield make
    for reg in made:
        reg.stop()
