"""The appc image manifest schema, docker2aci conversion, store IDs and name resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyrkt.appc.image import ManifestError, parse_image_manifest
from pyrkt.errors import Ambiguous, NotFound
from pyrkt.image.docker2aci import config_to_manifest
from pyrkt.image.store import Store, split_name_version, tree_image_id

REDIS_CONFIG = {
    "architecture": "amd64",
    "os": "linux",
    "created": "2024-01-01T00:00:00Z",
    "config": {
        "Entrypoint": ["docker-entrypoint.sh"],
        "Cmd": ["redis-server"],
        "Env": ["PATH=/usr/local/bin:/usr/bin", "REDIS_VERSION=7.2"],
        "WorkingDir": "/data",
        "User": "999:1000",
        "ExposedPorts": {"6379/tcp": {}, "53/udp": {}},
        "Volumes": {"/data": {}, "/var/lib/x": {}},
        "Labels": {"maintainer": "someone"},
    },
}


def test_docker_config_converts_as_docker2aci_did() -> None:
    m = config_to_manifest(REDIS_CONFIG, registry="registry-1.docker.io",
                           repository="library/redis", tag="7.2")  # fmt: skip
    assert m.name == "registry-1.docker.io/library/redis"
    assert m.label("version") == "7.2" and m.label("os") == "linux"
    assert m.label("arch") == "amd64"
    assert m.app is not None
    assert m.app.exec == ("docker-entrypoint.sh", "redis-server")
    assert (m.app.user, m.app.group) == ("999", "1000")
    assert m.app.working_directory == "/data"
    assert [(p.name, p.protocol, p.port) for p in m.app.ports] == [
        ("53-udp", "udp", 53), ("6379-tcp", "tcp", 6379)]  # fmt: skip
    assert [(v.name, v.path) for v in m.app.mount_points] == [
        ("volume-data", "/data"), ("volume-var-lib-x", "/var/lib/x")]  # fmt: skip
    assert m.annotation("appc.io/docker/entrypoint") == '["docker-entrypoint.sh"]'
    # what it writes is what the schema reads back
    assert parse_image_manifest(m.to_dict()) == m


def test_registry_with_port_and_user_defaults() -> None:
    cfg = {"architecture": "arm64", "os": "linux", "config": {"User": "nobody"}}
    m = config_to_manifest(cfg, registry="127.0.0.1:5000", repository="team/app", tag=None)
    assert m.name == "127.0.0.1_5000/team/app"
    assert m.label("version") is None and m.label("arch") == "aarch64"
    assert m.app is not None and (m.app.user, m.app.group) == ("nobody", "nobody")
    empty = config_to_manifest({}, registry="h.io", repository="r", tag="latest")
    assert empty.app is not None and (empty.app.user, empty.app.group) == ("0", "0")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "a", "bogus": 1},
         "unknown key 'bogus'"),
        ({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "a",
          "app": {"user": "0", "group": "0", "ports": [{"name": "p", "protocol": "tcp",
                                                        "port": 80, "extra": True}]}},
         "unknown key 'app.ports[0].extra'"),
        ({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "a",
          "app": {"user": "0", "group": "0", "ports": [{"name": "p", "protocol": "tcp",
                                                        "port": 99999}]}},
         "app.ports[0].port"),
        ({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "Not Valid"},
         "not an AC identifier"),
        ({"acKind": "PodManifest", "acVersion": "0.8.11", "name": "a"}, "acKind"),
        ({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "a",
          "app": {"group": "0"}}, "app.user"),
    ],
)  # fmt: skip
def test_invalid_manifests_name_the_key(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ManifestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_image_manifest(doc)


def test_tree_image_id_depends_on_layers_and_manifest() -> None:
    m = config_to_manifest(REDIS_CONFIG, registry="h.io", repository="r", tag="1")
    a = tree_image_id(m, ["sha256:aa", "sha256:bb"])
    assert a.startswith("sha512-") and len(a) == len("sha512-") + 64
    assert a == tree_image_id(m, ["sha256:aa", "sha256:bb"])
    assert a != tree_image_id(m, ["sha256:bb", "sha256:aa"])
    m2 = config_to_manifest(REDIS_CONFIG, registry="h.io", repository="r", tag="2")
    assert a != tree_image_id(m2, ["sha256:aa", "sha256:bb"])


def test_split_name_version() -> None:
    assert split_name_version("example.com/app:1.0") == ("example.com/app", "1.0")
    assert split_name_version("example.com/app") == ("example.com/app", None)
    assert split_name_version("127.0.0.1_5000/busybox:latest") == (
        "127.0.0.1_5000/busybox", "latest")  # fmt: skip


def test_store_resolves_prefixes_and_names(tmp_path: Path) -> None:
    store = Store(tmp_path)
    ids = []
    for tag in ("1", "2"):
        m = config_to_manifest({}, registry="h.io", repository="team/app", tag=tag)
        image_id = tree_image_id(m, [])
        with store.staging("t") as stage:
            (stage / "rootfs").mkdir()
            store.commit_tree(image_id, stage, m, 0)
        ids.append(image_id)
    assert store.resolve(ids[0][:30]).id == ids[0]
    assert store.resolve("h.io/team/app:1").id == ids[0]
    assert store.resolve("h.io/team/app").id == ids[1]  # latest import
    assert store.resolve("app:2").id == ids[1]  # last path component, as a convenience
    assert (store.render(ids[0]) / "rootfs").is_dir()
    with pytest.raises(NotFound, match="image ID too short"):  # rkt: two characters at least
        store.resolve("sha512-")
    common = next(n for n in range(64) if ids[0][7 + n] != ids[1][7 + n])
    if common >= 2:  # the two IDs share a prefix long enough to be ambiguous
        with pytest.raises(Ambiguous, match="ambiguous image ID"):
            store.resolve(ids[0][: 7 + common])
    with pytest.raises(NotFound):
        store.resolve("h.io/team/app:3")
    store.close()
