"""docker:// reference parsing and credential / challenge parsing (no registry needed)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pyrkt.errors import UsageError
from pyrkt.image.docker.auth import (
    AuthConfigError,
    Credentials,
    load_credentials,
    normalize_host,
    parse_challenge,
)
from pyrkt.image.docker.reference import DockerRef, parse_ref

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("ref", "want"), [
    ("docker://busybox", DockerRef("registry-1.docker.io", "library/busybox", "latest")),
    ("docker://redis:7", DockerRef("registry-1.docker.io", "library/redis", "7")),
    ("docker://docker.io/coreos/etcd", DockerRef("registry-1.docker.io", "coreos/etcd",
                                                  "latest")),
    ("docker://quay.io/coreos/etcd:v3.1", DockerRef("quay.io", "coreos/etcd", "v3.1")),
    ("docker://127.0.0.1:5000/busybox", DockerRef("127.0.0.1:5000", "busybox", "latest")),
    ("docker://localhost/a/b/c:t", DockerRef("localhost", "a/b/c", "t")),
    (f"docker://127.0.0.1:5000/redis@{DIGEST}",
     DockerRef("127.0.0.1:5000", "redis", None, DIGEST)),
    (f"docker://redis:7@{DIGEST}", DockerRef("registry-1.docker.io", "library/redis", "7",
                                             DIGEST)),
    ("busybox", DockerRef("registry-1.docker.io", "library/busybox", "latest")),
])
def test_parse_ref(ref: str, want: DockerRef) -> None:
    assert parse_ref(ref) == want


def test_reference_name_and_str() -> None:
    r = parse_ref(f"docker://127.0.0.1:5000/redis@{DIGEST}")
    assert r.reference == DIGEST
    assert r.name == "127.0.0.1:5000/redis"
    assert str(parse_ref("docker://busybox")) == "docker://registry-1.docker.io/library/busybox:latest"


@pytest.mark.parametrize("ref", ["docker://", "docker://Busybox", "docker://a/b:",
                                 "docker://a@sha256:zz", "docker://a/../b", "docker://a:t t"])
def test_parse_ref_rejects(ref: str) -> None:
    with pytest.raises(UsageError, match="invalid docker image reference"):
        parse_ref(ref)


def test_challenge_parsing() -> None:
    ch = parse_challenge('Bearer realm="https://auth.docker.io/token",'
                         'service="registry.docker.io",scope="repository:a/b:pull,push"')
    assert ch.scheme == "bearer"
    assert ch.params == {"realm": "https://auth.docker.io/token",
                         "service": "registry.docker.io", "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm="x"').scheme == "basic"


def test_normalize_host() -> None:
    assert normalize_host("https://index.docker.io/v1/") == "registry-1.docker.io"
    assert normalize_host("http://127.0.0.1:5000") == "127.0.0.1:5000"
    assert normalize_host("Quay.io") == "quay.io"


def _write(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_credentials_precedence(tmp_path: Path) -> None:
    docker = tmp_path / "docker.json"
    auth = base64.b64encode(b"dock:er").decode()
    _write(docker, {"auths": {"https://index.docker.io/v1/": {"auth": auth},
                              "quay.io": {"auth": auth}}})
    system, local = tmp_path / "system", tmp_path / "local"
    entry = {"rktKind": "dockerAuth", "rktVersion": "v1", "registries": ["quay.io"],
             "credentials": {"user": "sys", "password": "p1"}}
    _write(system / "auth.d" / "a.json", entry)
    _write(local / "auth.d" / "b.json", {**entry, "credentials": {"user": "loc",
                                                                  "password": "p2"}})
    _write(local / "auth.d" / "other.json", {"rktKind": "auth", "rktVersion": "v1",
                                             "domains": ["x"], "type": "basic"})
    creds = load_credentials([system, local], docker)
    assert creds["quay.io"] == Credentials("loc", "p2")
    assert creds["registry-1.docker.io"] == Credentials("dock", "er")


def test_bad_auth_file_is_reported(tmp_path: Path) -> None:
    _write(tmp_path / "auth.d" / "x.json", {"rktKind": "dockerAuth", "rktVersion": "v1",
                                            "registries": ["q"], "credentials": {}})
    with pytest.raises(AuthConfigError, match=r"x\.json"):
        load_credentials([tmp_path], tmp_path / "none.json")


def test_pick_platform_names_what_the_index_has() -> None:
    from pyrkt.errors import NotFound
    from pyrkt.image.docker.manifest import pick_platform

    def entry(arch: str, digest: str) -> dict[str, object]:
        return {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest, "size": 10,
                "platform": {"os": "linux", "architecture": arch}}

    doc = {"manifests": [entry("arm64", "sha256:" + "1" * 64),
                         entry("amd64", "sha256:" + "2" * 64)]}
    assert pick_platform(doc, "linux", "amd64", "x") == "sha256:" + "2" * 64
    with pytest.raises(NotFound) as e:
        pick_platform(doc, "linux", "riscv64", "x")
    assert e.value.hint == "it has: linux/arm64, linux/amd64"
