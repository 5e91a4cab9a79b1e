"""pyrkt.image.docker.pull against a real docker-registry filled by skopeo."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard

from pyrkt.errors import NotFound, RktError
from pyrkt.image.docker.blobs import BlobError
from pyrkt.image.docker.pull import PulledImage, PullOptions, pull
from pyrkt.image.docker.transport import AuthError, RegistryError
from support.fixtures import BUSYBOX_CONFIG, ImageLayouts
from support.images import busybox_rootfs, oci_layout
from support.proxy import CuttingProxy
from support.registry import Auth, Registry

pytestmark = pytest.mark.registry
HTTP = PullOptions(insecure_http=True)


def _tar_names(blob: Path, media_type: str) -> list[str]:
    data = blob.read_bytes()
    if media_type.endswith("+zstd"):
        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    mode = "r:gz" if media_type.endswith("gzip") else "r:"
    with tarfile.open(fileobj=io.BytesIO(data), mode=mode) as tf:
        return tf.getnames()


def _tar_file(blob: Path, name: str) -> bytes:
    with tarfile.open(blob, "r:*") as tf:
        f = tf.extractfile(name)
        assert f is not None
        return f.read()


def _pull_all(ref: str, work: Path, opts: PullOptions = HTTP) -> tuple[PulledImage, list[Path]]:
    with pull(ref, work, options=opts) as img:
        return img, [b.path for b in img.layers]


def _auth_d(dir_: Path, registry: str, user: str, password: str) -> Path:
    (dir_ / "auth.d").mkdir(parents=True, exist_ok=True)
    (dir_ / "auth.d" / "test.json").write_text(json.dumps({
        "rktKind": "dockerAuth", "rktVersion": "v1", "registries": [registry],
        "credentials": {"user": user, "password": password}}))
    return dir_


@pytest.fixture(scope="module")
def extra_images(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """multiarch:latest (amd64 + arm64 OCI index), dockerlist:latest (the same as a Docker
    manifest list of schema 2 manifests), mixed:latest (gzip, zstd, plain layers)."""
    base = tmp_path_factory.mktemp("extra-images")
    root = busybox_rootfs(base / "root")
    layout = base / "oci"
    oci_layout(layout, [root], BUSYBOX_CONFIG, "multi",
               platforms=["linux/arm64", "linux/amd64"])
    registry.push(layout, "multi", "multiarch", all_platforms=True, dest_tag="latest")
    registry.push(layout, "multi", "dockerlist", all_platforms=True, dest_tag="latest",
                  manifest_format="v2s2")
    oci_layout(layout, [root, {"etc/motd": b"zstd layer\n", "bin/.wh.ls": b""},
                        {"etc/plain": b"plain layer\n"}], BUSYBOX_CONFIG, "mixed",
               compression=["gzip", "zstd", "none"])
    registry.push(layout, "mixed", "mixed", dest_tag="latest")
    return registry


def test_anonymous_pull_yields_verified_layers_in_order(
        redis_image: str, image_layouts: ImageLayouts, tmp_path: Path) -> None:
    seen: dict[str, tuple[int, int]] = {}
    with pull(redis_image, tmp_path, options=HTTP,
              progress=lambda d, done, total: seen.__setitem__(d, (done, total))) as img:
        blobs = list(img.layers)
    assert img.name.endswith("/redis") and img.tag == "latest"
    assert img.config["config"]["Entrypoint"] == ["/usr/bin/redis-server"]
    assert [b.digest for b in blobs] == [d.digest for d in img.layer_descriptors]
    assert "bin/busybox" in _tar_names(blobs[0].path, blobs[0].media_type)
    assert "usr/bin/redis-server" in _tar_names(blobs[1].path, blobs[1].media_type)
    for b in blobs:
        assert b.path.stat().st_size == b.size
        assert seen[b.digest] == (b.size, b.size)
    # the manifest digest is the one skopeo pushed from the layout
    index = json.loads((image_layouts.redis / "index.json").read_text())
    assert img.manifest_digest == index["manifests"][0]["digest"]


def test_layers_kept_in_memory_up_to_the_budget_read_back_verified(
        redis_image: str, tmp_path: Path) -> None:
    import hashlib

    with pull(redis_image, tmp_path, options=HTTP) as probe:
        budget = probe.layer_descriptors[0].size  # room for about one layer
    opts = PullOptions(insecure_http=True, memory=budget)
    with pull(redis_image, tmp_path / "mem", options=opts) as img:
        blobs = list(img.layers)
    in_memory = [b for b in blobs if b.path is None]
    assert in_memory and sum(b.size for b in in_memory) <= budget
    assert len(in_memory) < len(blobs)
    for b in blobs:
        stream = b.open()
        parts = []
        while chunk := stream.read(1000):
            parts.append(chunk)
        getattr(stream, "close", lambda: None)()
        data = b"".join(parts)
        assert (len(data), f"sha256:{hashlib.sha256(data).hexdigest()}") == (b.size, b.digest)
    names = {p.name for p in (tmp_path / "mem").iterdir()}
    assert not {b.digest.replace(":", "-") for b in in_memory} & names


def test_plain_http_needs_insecure_option(busybox_image: str, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot reach registry") as e:
        pull(busybox_image, tmp_path, options=PullOptions())
    assert e.value.hint is not None and "--insecure-options=http" in e.value.hint


def test_missing_tag_is_not_found(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="busybox:nope"):
        pull(registry.ref("busybox", "nope"), tmp_path, options=HTTP)


def test_basic_auth_pull_with_auth_d(basic_auth_registry: Registry, tmp_path: Path) -> None:
    reg = basic_auth_registry
    conf = _auth_d(tmp_path / "conf", reg.host, reg.username, reg.password)
    opts = PullOptions(insecure_http=True, config_dirs=(conf,),
                       docker_config=tmp_path / "none.json")
    img, paths = _pull_all(reg.ref("busybox"), tmp_path / "work", opts)
    assert "bin/busybox" in _tar_names(paths[0], img.layer_descriptors[0].media_type)


def test_basic_auth_without_credentials_fails(basic_auth_registry: Registry,
                                              tmp_path: Path) -> None:
    opts = PullOptions(insecure_http=True, docker_config=tmp_path / "none.json")
    with pytest.raises(AuthError, match="requires authentication"):
        pull(basic_auth_registry.ref("busybox"), tmp_path, options=opts)


def test_basic_auth_wrong_password_fails(basic_auth_registry: Registry,
                                         tmp_path: Path) -> None:
    reg = basic_auth_registry
    conf = _auth_d(tmp_path / "conf", reg.host, reg.username, "wrong")
    opts = PullOptions(insecure_http=True, config_dirs=(conf,),
                       docker_config=tmp_path / "none.json")
    with pytest.raises(AuthError, match=f"registry {reg.host} denied access") as e:
        pull(reg.ref("busybox"), tmp_path / "work", options=opts)
    assert e.value.hint is not None and "password" in e.value.hint


def test_token_auth_pull_with_docker_config(token_auth_registry: Registry,
                                            tmp_path: Path) -> None:
    reg = token_auth_registry
    docker_config = tmp_path / "config.json"
    auth = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    docker_config.write_text(json.dumps({"auths": {f"http://{reg.host}": {"auth": auth}}}))
    opts = PullOptions(insecure_http=True, docker_config=docker_config)
    _, paths = _pull_all(reg.ref("busybox"), tmp_path / "work", opts)
    assert len(paths) == 1
    assert reg.token_server is not None
    assert any("scope=repository%3Abusybox%3Apull" in r for r in reg.token_server.requests)


def test_token_auth_with_auth_d_and_wrong_password(token_auth_registry: Registry,
                                                   tmp_path: Path) -> None:
    reg = token_auth_registry
    good = _auth_d(tmp_path / "good", reg.host, reg.username, reg.password)
    opts = PullOptions(insecure_http=True, config_dirs=(good,),
                       docker_config=tmp_path / "none.json")
    _pull_all(reg.ref("busybox"), tmp_path / "w1", opts)
    bad = _auth_d(tmp_path / "bad", reg.host, reg.username, "wrong")
    with pytest.raises(AuthError, match=f"authentication to registry {reg.host} failed"):
        pull(reg.ref("busybox"), tmp_path / "w2",
             options=PullOptions(insecure_http=True, config_dirs=(good, bad),
                                 docker_config=tmp_path / "none.json"))


def test_token_auth_anonymous_is_denied(token_auth_registry: Registry,
                                        tmp_path: Path) -> None:
    opts = PullOptions(insecure_http=True, docker_config=tmp_path / "none.json")
    with pytest.raises(AuthError, match="denied access to busybox"):
        pull(token_auth_registry.ref("busybox"), tmp_path, options=opts)


def test_multi_arch_index_resolves_to_amd64(extra_images: Registry, tmp_path: Path) -> None:
    img, paths = _pull_all(extra_images.ref("multiarch"), tmp_path / "amd64")
    assert img.config["architecture"] == "amd64"
    assert _tar_file(paths[-1], "etc/platform") == b"linux/amd64\n"
    arm = PullOptions(insecure_http=True, arch="arm64")
    img, paths = _pull_all(extra_images.ref("multiarch"), tmp_path / "arm64", arm)
    assert _tar_file(paths[-1], "etc/platform") == b"linux/arm64\n"
    with pytest.raises(NotFound, match="no image for linux/s390x"):
        pull(extra_images.ref("multiarch"), tmp_path / "s390x",
             options=PullOptions(insecure_http=True, arch="s390x"))


def test_docker_manifest_list_and_schema2(extra_images: Registry, tmp_path: Path) -> None:
    img, paths = _pull_all(extra_images.ref("dockerlist"), tmp_path)
    assert img.manifest_media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert [d.media_type for d in img.layer_descriptors] == [
        "application/vnd.docker.image.rootfs.diff.tar.gzip"] * 2
    assert _tar_file(paths[-1], "etc/platform") == b"linux/amd64\n"


def test_gzip_zstd_and_plain_layers(extra_images: Registry, tmp_path: Path) -> None:
    img, paths = _pull_all(extra_images.ref("mixed"), tmp_path)
    types = [d.media_type for d in img.layer_descriptors]
    assert types == ["application/vnd.oci.image.layer.v1.tar+gzip",
                     "application/vnd.oci.image.layer.v1.tar+zstd",
                     "application/vnd.oci.image.layer.v1.tar"]
    assert "etc/motd" in _tar_names(paths[1], types[1])
    assert "bin/.wh.ls" in _tar_names(paths[1], types[1])
    assert _tar_names(paths[2], types[2]) == ["etc", "etc/plain"]


@pytest.fixture
def private_registry(make_registry: Callable[..., Registry],
                     image_layouts: ImageLayouts) -> Iterator[Registry]:
    reg = make_registry(Auth.ANONYMOUS)
    reg.push(image_layouts.busybox, "latest", "busybox")
    yield reg


def test_corrupt_blob_is_rejected(private_registry: Registry, tmp_path: Path) -> None:
    reg = private_registry
    _, body = reg.manifest("busybox", "latest", "application/vnd.oci.image.manifest.v1+json")
    layer = json.loads(body)["layers"][0]["digest"]
    data = reg.blob_data_path(layer)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(BlobError, match=f"blob {layer}: digest mismatch"):
        _pull_all(reg.ref("busybox"), tmp_path)
    assert not any(p.name.startswith(layer.replace(":", "-")) for p in tmp_path.iterdir())


def test_truncated_download_is_rejected(private_registry: Registry, tmp_path: Path) -> None:
    proxy = CuttingProxy(private_registry.host)
    try:
        ref = f"docker://{proxy.host}/busybox:latest"
        with pytest.raises(BlobError, match=r"blob sha256:[0-9a-f]{64}: download truncated"):
            _pull_all(ref, tmp_path / "cut")
        assert proxy.cut_count >= 1
        proxy.cut_blobs = False
        _, paths = _pull_all(ref, tmp_path / "whole")
        assert len(paths) == 1
    finally:
        proxy.stop()


def test_errors_are_rkt_errors() -> None:
    with pytest.raises(RktError, match="invalid docker image reference"):
        pull("docker://UPPER/Case", Path("/nonexistent"))


def test_layers_download_only_when_asked(redis_image: str, tmp_path: Path) -> None:
    with pull(redis_image, tmp_path, options=HTTP) as img:
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            img.config_digest.replace(":", "-")]
        first = next(img.layers)
        assert first.digest == img.layer_descriptors[0].digest
    names = {p.name for p in tmp_path.iterdir()}
    assert first.path.name in names
    assert not any(n.endswith(".part") for n in names)


def test_https_registry_certificate_checks(make_registry: Callable[..., Registry],
                                           image_layouts: ImageLayouts, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    reg = make_registry(Auth.ANONYMOUS, tls=True)
    reg.push(image_layouts.busybox, "latest", "busybox")
    ref = reg.ref("busybox")
    with pytest.raises(RegistryError, match=f"TLS error talking to registry {reg.host}") as e:
        pull(ref, tmp_path / "verified", options=PullOptions())
    assert e.value.hint is not None and "--insecure-options=tls" in e.value.hint
    _, paths = _pull_all(ref, tmp_path / "insecure", PullOptions(insecure_tls=True))
    assert len(paths) == 1
    assert reg.ca_cert is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(reg.ca_cert))
    _, paths = _pull_all(ref, tmp_path / "trusted", PullOptions())
    assert len(paths) == 1
