"""The appc image manifest schema, docker2aci conversion, store IDs and name resolution,
and the IDs of ACI files imported before (image.localaci)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyrkt.appc.image import ManifestError, parse_image_manifest
from pyrkt.errors import Ambiguous, NotFound
from pyrkt.image.docker2aci import config_to_manifest
from pyrkt.image.store import Store, split_name_version, tree_image_id
from support.acis import aci_manifest, tar_aci

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


def _aci(tmp: Path, out: Path, code: str) -> Path:
    """A one-file ACI whose app exits with code (same length, same size: only content
    differs between two of them)."""
    src = tmp / f"aci-{code}"
    (src / "rootfs").mkdir(parents=True, exist_ok=True)
    (src / "manifest").write_text(aci_manifest("example.com/app", {
        "app": {"exec": ["/bin/sh", "-c", f"exit {code}"], "user": "0", "group": "0"}}))
    for p in (src, src / "manifest", src / "rootfs"):
        os.utime(p, ns=(0, 0))  # the same tar headers for both
    return tar_aci(src, out)


def test_an_aci_file_is_known_only_while_it_is_the_very_file_imported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`rkt run FILE.aci` takes the ID of a file imported before from the store's index
    (no re-read) only while the file is unchanged: new content of the same size under
    the old mtime (only its ctime tells) is read again, as is a file changed within the
    last seconds (not recorded yet) and one whose image is gone."""
    from pyrkt.image import localaci
    from pyrkt.linux import files

    store, cache = Store(tmp_path / "data"), tmp_path / "data" / "cache"
    aci = _aci(tmp_path, tmp_path / "app.aci", "5")
    st = os.stat(aci)
    image_id = store.import_aci(aci)
    localaci.remember(cache, aci, st, image_id)
    assert localaci.known(store, cache, aci) is None  # written just now: not recorded
    monkeypatch.setattr(files, "SETTLE_NS", -1)  # as if it were written long ago
    localaci.remember(cache, aci, st, image_id)
    assert localaci.known(store, cache, aci) == image_id
    assert localaci.known(store, cache, tmp_path / "elsewhere.aci") is None

    other = _aci(tmp_path, tmp_path / "other.aci", "6")
    assert other.stat().st_size == st.st_size
    aci.write_bytes(other.read_bytes())  # in place: the same inode, size and mtime
    os.utime(aci, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert localaci.known(store, cache, aci) is None
    new_id = store.import_aci(aci)
    assert new_id != image_id
    localaci.remember(cache, aci, os.stat(aci), new_id)
    assert localaci.known(store, cache, aci) == new_id
    store.remove(new_id)
    assert localaci.known(store, cache, aci) is None
    store.close()
