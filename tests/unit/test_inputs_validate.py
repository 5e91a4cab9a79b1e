"""The input checks every entry point shares (`pyrkt.appc.validate`), the pod-level
checks stage0 makes before a pod exists (`pyrkt.stage0.checks`), the bounded file read,
and how the flags and the manifests use them."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pyrkt.appc import pod as appc
from pyrkt.appc import validate as check
from pyrkt.appc.image import load_image_manifest
from pyrkt.cli import runflags as rf
from pyrkt.errors import RktError, UsageError
from pyrkt.linux.files import read_regular
from pyrkt.stage0.checks import check_pod
from pyrkt.stage0.prepare import default_app_name
from pyrkt.stage1.planner import PlanError, check_host_source

NOT_NAMES = {
    "": "cannot be empty",
    "../../tmp/x": "only lower case",
    "a/b": "only lower case",
    "..": "only lower case",
    "Web": "only lower case",
    "web_1": "only lower case",
    "-web": "start and end",
    "web-": "start and end",
    "a" * (check.MAX_AC_NAME + 1): "longer than",
}


@pytest.mark.parametrize("name", NOT_NAMES)
def test_ac_name_refuses_what_appc_refuses(name: str) -> None:
    with pytest.raises(check.InvalidValue, match=NOT_NAMES[name]) as e:
        check.ac_name(name, "--name")
    assert str(e.value).startswith("--name: invalid name")
    assert "\n" not in str(e.value)
    assert len(str(e.value)) < 200  # a long value is shortened in the message


@pytest.mark.parametrize("name", ["web", "a", "0", "redis-6", "a--b", "x" * check.MAX_AC_NAME])
def test_ac_name_accepts_what_rkt_accepted(name: str) -> None:
    assert check.ac_name(name, "--name") == name


def test_invalid_value_is_both_a_usage_and_a_manifest_error() -> None:
    with pytest.raises(UsageError):
        check.ac_name("A", "--name")
    with pytest.raises(appc.ManifestError):
        check.ac_name("A", "apps[0].name")


def test_ac_identifier() -> None:
    assert check.ac_identifier("example.com/app_v1~x", "n") == "example.com/app_v1~x"
    for bad in ("", "Example.com", "/abs", "a/", "a b", "é"):
        with pytest.raises(check.InvalidValue, match="is not an AC identifier"):
            check.ac_identifier(bad, "n")


@pytest.mark.parametrize(("argv", "message"), [
    ((), "nothing to execute"),
    (("",), "nothing to execute"),
    (("bin/sh",), "--exec must be absolute path: 'bin/sh'"),
    (("./run",), "--exec must be absolute path"),
    (("../../bin/sh",), "--exec must be absolute path"),
    (("/bin/sh", "a\0b"), "NUL"),
])  # fmt: skip
def test_exec_refused(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(check.InvalidValue, match=message):
        check.exec_argv(argv, "--exec")


def test_exec_absolute_or_a_command_name() -> None:
    assert check.exec_argv(["/bin/sh", "-c", "x"], "e") == ("/bin/sh", "-c", "x")
    assert check.exec_argv(["sh"], "e") == ("sh",)  # looked up in the app's PATH (appc)


def test_env_names_and_annotation_sizes() -> None:
    assert check.env_name("A_b.c-1", "e") == "A_b.c-1"
    for bad in ("", "1A", "A=B", "BASH_FUNC_f%%", "A B"):
        with pytest.raises(check.InvalidValue):
            check.env_name(bad, "e")
    check.kv_size([("a", "x" * (check.MAX_KV_BYTES - 1))], "annotations")
    with pytest.raises(check.InvalidValue, match="KiB in all"):
        check.kv_size([("a", "x" * check.MAX_KV_BYTES)], "annotations")


def test_load_json_caps_size_and_depth() -> None:
    assert check.load_json(b'{"a": [1, {"b": []}]}', "m") == {"a": [1, {"b": []}]}
    deep_ok = "[" * check.MAX_JSON_DEPTH + "]" * check.MAX_JSON_DEPTH
    check.load_json(deep_ok, "m")
    too_deep = "[" * (check.MAX_JSON_DEPTH + 1) + "]" * (check.MAX_JSON_DEPTH + 1)
    with pytest.raises(check.InvalidValue, match="nested more than"):
        check.load_json(too_deep, "m")
    with pytest.raises(check.InvalidValue, match="nested more than"):  # RecursionError
        check.load_json("[" * 100_000 + "]" * 100_000, "m", max_bytes=1 << 20)
    with pytest.raises(check.InvalidValue, match="larger than"):
        check.load_json(b" " * (check.MAX_MANIFEST_BYTES + 1), "m")
    with pytest.raises(check.InvalidValue, match="not valid JSON"):
        check.load_json(b"{", "m")
    with pytest.raises(check.InvalidValue, match="not valid JSON"):
        check.load_json(b"\xff\xfe{", "m")


def test_read_regular_refuses_devices_fifos_folders_and_big_files(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 100)
    assert read_regular(f, 100) == b"x" * 100
    with pytest.raises(OSError, match="larger than 99 bytes"):
        read_regular(f, 99)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: a blocking open would hang
    for p in ("/dev/zero", fifo, tmp_path):
        with pytest.raises(OSError, match="not a regular file"):
            read_regular(p, 1 << 20)
    with pytest.raises(check.InvalidValue, match="cannot read --pod-manifest /dev/zero: not a"):
        check.read_file("/dev/zero", "--pod-manifest")


def test_flags_use_the_same_checks() -> None:
    for argv, message in (
        (["img", "--name=../x"], "--name: invalid name '../x'"),
        (["img", "--exec=bin/true"], "--exec must be absolute path"),
        (["img", "--working-dir=rel"], "--working-dir: 'rel' is not an absolute path"),
        (["img", "--mount", "volume=A,target=/x"], "--mount volume: invalid name 'A'"),
        (["img", "--mount", "volume=a,target="], "--mount target: empty path"),
        (["img", "--environment=1X=y"], "not a valid environment variable name"),
    ):
        with pytest.raises(UsageError, match=message):
            rf.parse_run_args(argv)
    with pytest.raises(UsageError, match="--volume: invalid name"):
        rf.parse_volume("Data,kind=empty")
    with pytest.raises(UsageError, match="source: 'rel' is not an absolute path"):
        rf.parse_volume("data,kind=host,source=rel")
    with pytest.raises(UsageError, match="an empty volume has no source"):
        rf.parse_volume("data,kind=empty,source=/x")
    with pytest.raises(UsageError, match="--port: invalid name"):
        rf.parse_port("HTTP:80")
    with pytest.raises(UsageError, match="not an AC identifier"):
        rf.parse_annotations(["Bad=1"], "--annotation", acid=True)
    big = ["a=" + "x" * (100 << 10)] * 3
    with pytest.raises(UsageError, match="KiB in all"):
        rf.parse_annotations(big, "--user-annotation")


def _pod(**app: object) -> dict[str, object]:
    ra: dict[str, object] = {"name": "web", "image": {"name": "x", "id": "sha512-x"}}
    if app:
        ra["app"] = {"user": "0", "group": "0", **app}
    return {"acKind": "PodManifest", "acVersion": "0.8.11", "apps": [ra]}


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m["apps"][0].update(name="../../../../tmp/x"), "apps[0].name: invalid name"),
    (lambda m: m["apps"][0].update(name="A"), "apps[0].name: invalid name"),
    (lambda m: m["apps"][0]["app"].update(exec=[]), "nothing to execute"),
    (lambda m: m["apps"][0]["app"].update(exec=["bin/x"]), "must be absolute path"),
    (lambda m: m["apps"][0]["app"].update(workingDirectory="x"), "not an absolute path"),
    (lambda m: m["apps"][0].update(mounts=[{"volume": "v", "path": ""}]),
     "apps[0].mounts[0].path: empty path"),
    (lambda m: m.update(volumes=[{"name": "../v", "kind": "empty"}]), "volumes[0].name"),
    (lambda m: m.update(volumes=[{"name": "v", "kind": "host", "source": "x"}]),
     "volumes[0].source: 'x' is not an absolute path"),
    (lambda m: m.update(volumes=[{"name": "v", "kind": "empty"}] * 2), "duplicate volume"),
    (lambda m: m.update(ports=[{"name": "P", "hostPort": 1}]), "ports[0].name"),
    (lambda m: m.update(ports=[{"name": "p", "hostPort": 70000}]), "out of range"),
    (lambda m: m.update(annotations=[{"name": "a", "value": "x" * (300 << 10)}]),
     "annotations: more than 256 KiB"),
    (lambda m: m["apps"][0]["app"].update(
        mountPoints=[{"name": "../../../../tmp/x", "path": "/d"}]), "mountPoints[0].name"),
])  # fmt: skip
def test_pod_manifest_refuses(change: object, message: str) -> None:
    m = _pod(exec=["/bin/true"])
    change(m)  # type: ignore[operator]
    with pytest.raises(appc.ManifestError) as e:
        appc.load_pod_manifest(json.dumps(m))
    assert message in str(e.value)


def test_pod_manifest_file_cap_and_image_manifest_checks() -> None:
    with pytest.raises(appc.ManifestError, match="pod manifest: larger than 1024 KiB"):
        appc.load_pod_manifest(b" " * (check.MAX_MANIFEST_BYTES + 1))
    img = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/x",
           "app": {"exec": ["/x"], "user": "0", "group": "0",
                   "mountPoints": [{"name": "../../etc", "path": "/data"}]}}  # fmt: skip
    with pytest.raises(appc.ManifestError, match=r"mountPoints\[0\].name: invalid name"):
        load_image_manifest(json.dumps(img))


def test_default_app_name_is_a_valid_ac_name() -> None:
    assert default_app_name("example.com/My_App:1.0") == "my-app"
    long = default_app_name("example.com/" + "a" * 300)
    assert check.ac_name(long, "n") == "a" * check.MAX_AC_NAME
    assert default_app_name("x/" + "-" * 10) == "app"


def test_host_source_links_are_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "to-root").symlink_to("/")
    (tmp_path / "to-real").symlink_to(real)
    (tmp_path / "file").write_text("x")
    vol = appc.Volume("v", "host", str(real))
    assert check_host_source(vol) == real
    assert check_host_source(appc.Volume("v", "host", str(real) + "/./")) == real
    for src, message in ((tmp_path / "to-root", "symbolic link \\(to /\\)"),
                         (tmp_path / "to-real" , "symbolic link"),
                         (tmp_path / "missing", "No such file")):  # fmt: skip
        with pytest.raises(PlanError, match=message):
            check_host_source(appc.Volume("v", "host", str(src)))
    assert check_host_source(appc.Volume("v", "host", str(tmp_path / "file")))
    assert check_host_source(appc.Volume("v", "host", str(tmp_path / "file")), for_vm=True)
    with pytest.raises(PlanError, match="is neither a folder nor a regular file"):
        check_host_source(appc.Volume("v", "host", "/dev/null"), for_vm=True)


KVM_STAGE1 = {"annotations": [{"name": "coreos.com/rkt/stage1/flavor", "value": "kvm"}]}
LABELS = [{"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}]
IMAGE = {"labels": LABELS, "app": {"exec": ["/bin/sh"], "user": "0", "group": "0",
                 "mountPoints": [{"name": "data", "path": "/data"}],
                 "ports": [{"name": "http", "protocol": "tcp", "port": 80}]}}  # fmt: skip


def test_check_pod_before_the_pod_exists(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")

    def pm(**kw: object) -> appc.PodManifest:
        ra = appc.RuntimeApp("web", appc.ImageRef("x", "sha512-x"),
                             mounts=kw.pop("mounts", ()))  # type: ignore[arg-type]
        return appc.PodManifest(apps=(ra,), **kw)  # type: ignore[arg-type]

    check_pod(pm(mounts=(appc.Mount("data", "data"),),
                 volumes=(appc.Volume("data", "empty"),)), {"web": IMAGE}, {})
    cases: list[tuple[appc.PodManifest, Mapping[str, Any], str]] = [
        (pm(mounts=(appc.Mount("nope", "/x"),)), {}, "no volume named 'nope'"),
        (pm(ports=(appc.ExposedPort("db", 1),)), {}, "port name 'db' is not defined"),
        (pm(volumes=(appc.Volume("data", "host", "/dev/null"),)), KVM_STAGE1,
         "is neither a folder nor a regular file"),
    ]  # fmt: skip
    for manifest, stage1, message in cases:
        with pytest.raises(RktError, match=message):
            check_pod(manifest, {"web": IMAGE}, stage1)
    caps = {"labels": LABELS, "app": {**IMAGE["app"], "isolators": [
        {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_NOPE"]}}]}}
    with pytest.raises(RktError, match="unknown capability 'CAP_NOPE'"):
        check_pod(pm(), {"web": caps}, {})
    with pytest.raises(RktError, match="nothing to execute"):
        check_pod(pm(), {"web": {"labels": LABELS,
                             "app": {"exec": [], "user": "0", "group": "0"}}}, {})
    with pytest.raises(RktError, match="has no app to run"):
        check_pod(pm(), {"web": {"labels": LABELS}}, {})
