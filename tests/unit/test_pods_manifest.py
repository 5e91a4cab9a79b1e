"""The appc pod manifest, run flags and pod folder states (no root needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyrkt.appc import pod as appc
from pyrkt.cli import runflags as rf
from pyrkt.cli.run import build_prepare_options
from pyrkt.errors import Ambiguous, NotFound, UsageError
from pyrkt.pod import pods


def sample() -> dict[str, object]:
    return {
        "acVersion": "0.8.11",
        "acKind": "PodManifest",
        "apps": [
            {
                "name": "redis",
                "image": {"name": "example.com/redis", "id": "sha512-abc",
                          "labels": [{"name": "version", "value": "1"}]},
                "app": {
                    "exec": ["/bin/redis-server"],
                    "user": "0",
                    "group": "0",
                    "environment": [{"name": "A", "value": "1"}],
                    "isolators": [{"name": "resource/memory", "value": {"limit": "42M"}}],
                    "mountPoints": [{"name": "data", "path": "/data", "readOnly": False}],
                    "ports": [{"name": "redis", "protocol": "tcp", "port": 6379}],
                },
                "readOnlyRootFS": True,
                "mounts": [{"volume": "data", "path": "/data"}],
            }
        ],
        "volumes": [{"name": "data", "kind": "host", "source": "/srv", "readOnly": True}],
        "ports": [{"name": "redis", "hostPort": 6379}],
        "annotations": [{"name": "x", "value": "y"}],
    }  # fmt: skip


def test_pod_manifest_round_trips() -> None:
    pm = appc.parse_pod_manifest(sample())
    again = appc.load_pod_manifest(pm.to_json())
    assert again == pm
    ra = pm.apps[0]
    assert ra.read_only_rootfs and ra.app is not None
    assert ra.app.isolator(appc.ISO_MEMORY) == {"limit": "42M"}
    assert pm.volumes[0].read_only is True
    assert pm.ports[0].host_port == 6379


def test_unknown_key_is_rejected_with_its_path() -> None:
    data = sample()
    data["apps"][0]["app"]["exek"] = ["x"]  # type: ignore[index]
    with pytest.raises(appc.ManifestError, match=r"apps\[0\]\.app\.exek: unknown key"):
        appc.parse_pod_manifest(data)
    data = sample()
    data["volumes"][0]["sauce"] = "/x"  # type: ignore[index]
    with pytest.raises(appc.ManifestError, match=r"volumes\[0\]\.sauce"):
        appc.parse_pod_manifest(data)


def test_duplicate_app_names_rejected() -> None:
    data = sample()
    data["apps"] = [data["apps"][0], data["apps"][0]]  # type: ignore[index]
    with pytest.raises(appc.ManifestError, match="duplicate app name"):
        appc.parse_pod_manifest(data)


@pytest.mark.parametrize(
    ("text", "milli", "value"),
    [("42M", False, 42_000_000), ("1Gi", False, 2**30), ("512", False, 512),
     ("500m", True, 500), ("2", True, 2000), ("1.5", True, 1500)],
)  # fmt: skip
def test_quantities(text: str, milli: bool, value: int) -> None:
    assert appc.parse_quantity(text, milli=milli) == value


def test_per_app_flag_before_image_is_an_error() -> None:
    with pytest.raises(UsageError, match="--exec must follow an image"):
        rf.parse_run_args(["--exec=/bin/sh", "img.aci"])


def test_interleaved_app_flags_and_args() -> None:
    a = rf.parse_run_args([
        "--net=host", "a.aci", "--name=one", "--memory=42M", "--", "x", "y", "---",
        "b.aci", "--exec", "/bin/true", "--environment=K=V", "--readonly-rootfs",
    ])  # fmt: skip
    assert a.all("--net") == ["host"]
    one, two = a.apps
    assert (one.image, one.name, one.memory, one.args) == ("a.aci", "one", "42M", ("x", "y"))
    assert (two.image, two.exec, two.environment) == ("b.aci", "/bin/true", (("K", "V"),))
    assert two.readonly_rootfs is True


def test_set_env_duplicates_rejected() -> None:
    with pytest.raises(UsageError, match="more than once"):
        rf.parse_env_list(["A=1", "A=2"], "--set-env")


def test_volume_and_port_flags() -> None:
    v = rf.parse_volume("data,kind=host,source=/srv,readOnly=true,recursive=false")
    assert (v.name, v.kind, v.source, v.read_only, v.recursive) == (
        "data", "host", "/srv", True, False)  # fmt: skip
    e = rf.parse_volume("scratch,kind=empty,mode=0700,uid=5,gid=6")
    assert (e.mode, e.uid, e.gid) == ("0700", 5, 6)
    with pytest.raises(UsageError):
        rf.parse_volume("x,kind=host,source=relative")
    p = rf.parse_port("http:127.0.0.1:8080")
    assert (p.name, p.host_ip, p.host_port) == ("http", "127.0.0.1", 8080)
    with pytest.raises(UsageError):
        rf.parse_port("http")


def test_pod_manifest_conflicts() -> None:
    a = rf.parse_run_args(["--pod-manifest=/x.json", "img.aci"])
    msg = r"conflicting flags set with --pod-manifest \(see --help\)"
    with pytest.raises(UsageError, match=msg):
        build_prepare_options(a)


def test_pod_states_and_uuid_prefixes(tmp_path: Path) -> None:
    pod = pods.create(tmp_path)
    assert pod.folder is pods.Folder.PREPARE
    assert pods.lookup(tmp_path, pod.uuid[:6]).state() is pods.State.PREPARING
    pod.move(pods.Folder.PREPARED)
    pod.move(pods.Folder.RUN)
    assert pods.lookup(tmp_path, pod.uuid).state() is pods.State.RUNNING
    pod.close()  # the lock goes with the last fd
    assert pods.lookup(tmp_path, pod.uuid).state() is pods.State.EXITED
    with pytest.raises(NotFound, match='no matches found for "zzz"'):
        pods.lookup(tmp_path, "zzz")
    for u in ("abcd0000-0000-0000-0000-000000000001", "abcd0000-0000-0000-0000-000000000002"):
        (pods.pods_root(tmp_path) / "prepared" / u).mkdir()
    with pytest.raises(Ambiguous, match="ambiguous uuid"):
        pods.lookup(tmp_path, "abcd")
    assert pods.lookup(tmp_path, "abcd0000-0000-0000-0000-000000000002").state() is (
        pods.State.PREPARED
    )


def test_manifest_written_is_json_with_kind(tmp_path: Path) -> None:
    pm = appc.parse_pod_manifest(sample())
    data = json.loads(pm.to_json())
    assert data["acKind"] == "PodManifest" and data["acVersion"] == "0.8.11"


def test_go_durations_times_and_tables() -> None:
    from datetime import datetime, timedelta, timezone

    from pyrkt.cli.podfmt import go_time, tab_table
    from pyrkt.cli.pods import parse_duration

    assert parse_duration("30m", "--grace-period") == 1800
    assert parse_duration("1h30m", "--grace-period") == 5400
    assert parse_duration("0s", "--grace-period") == 0
    assert parse_duration("500ms", "--wait") == 0.5
    with pytest.raises(UsageError):
        parse_duration("10 minutes", "--grace-period")
    dt = datetime(2016, 1, 26, 14, 23, 34, 631000, tzinfo=timezone(timedelta(hours=1), "CET"))
    assert go_time(dt) == "2016-01-26 14:23:34.631 +0100 CET"
    assert go_time(dt.replace(microsecond=500000)) == "2016-01-26 14:23:34.5 +0100 CET"
    table = tab_table([["UUID", "APP"], ["0123456789", "redis"]]).splitlines()
    assert table == ["UUID\t\tAPP", "0123456789\tredis"]


def test_own_stage1_entrypoints_run_in_process(tmp_path: Path) -> None:
    from pyrkt.stage0.run import inprocess_module
    from pyrkt.stage1.build.aci import Flavor, entrypoint_script

    flavors = [(Flavor.COREOS, "pyrkt.stage1.container"), (Flavor.KVM, "pyrkt.stage1.kvm"),
               (Flavor.FLY, "pyrkt.stage1.fly")]  # fmt: skip
    for flavor, module in flavors:
        entry = tmp_path / f"run-{flavor}"
        entry.write_text(entrypoint_script(flavor, "run"))
        assert inprocess_module(entry) == module
    other = tmp_path / "other"
    line = 'exec "${PYRKT_PYTHON:-python3}" -m pyrkt.stage1.kvm run "$@"'
    other.write_text(f"#!/bin/sh\necho hi\n{line}\n")
    assert inprocess_module(other) is None
    foreign = tmp_path / "foreign"
    foreign.write_text('#!/bin/sh\nexec "${PYRKT_PYTHON:-python3}" -m evil run "$@"\n')
    assert inprocess_module(foreign) is None


def test_new_uuid_is_a_random_version_4_uuid() -> None:
    import uuid

    from pyrkt.pod.pods import new_uuid

    seen = set()
    for _ in range(200):
        u = new_uuid()
        parsed = uuid.UUID(u)
        assert str(parsed) == u
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        seen.add(u)
    assert len(seen) == 200


def test_pull_policy_is_checked_without_the_fetch_module() -> None:
    from pyrkt.image import fetch, policy

    assert fetch.parse_pull_policy is policy.parse_pull_policy
    assert policy.parse_pull_policy("never") is policy.PullPolicy.NEVER
    with pytest.raises(UsageError, match="--pull-policy"):
        policy.parse_pull_policy("sometimes")
