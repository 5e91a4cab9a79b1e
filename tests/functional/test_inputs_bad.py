"""Every bad input of issue 9's point 5, through the `rkt` command: each is refused with
exit 254 and one line on stderr (warnings aside), before anything exists: no pod folder
is made (the pods/ state folders are not even touched: their mtimes stay), hence no
stage1 runs and no cgroup, network or mount appears; nothing is written outside the data
directory (the names that would escape it aim at a folder the test watches).

A name like `../../../../../escaped` put in a pod folder lands in the folder holding the
data directory (`DIR/pods/<state>/<uuid>/appsinfo/` is five levels down): the test's own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.acis import VERBS, aci_manifest, stage1_annotations, tar_aci

pytestmark = pytest.mark.root

ESCAPE = "../../../../../escaped"
DEEP = "lists nested 5000 deep"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _aci(src: Path, out: Path, manifest: str) -> Path:
    (src / "manifest").write_text(manifest)
    return tar_aci(src, out)


@dataclass
class Lab:
    base: Path  # holds the data dir, and is where escaping names would land
    data: Path
    files: Path  # inputs: images, manifests, volume sources
    app: Path
    evil: Path
    kvm_stage1: Path

    def rkt(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pyrkt", f"--dir={self.data}", "--insecure-options=image",
                *args]  # fmt: skip
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        print(f"$ rkt {' '.join(a[:80] for a in args)}\n-> {cp.returncode}\n{cp.stderr}")
        return cp

    def pod_manifest(self, name: str, change: Callable[[dict[str, object]], None]) -> str:
        image_id = self.rkt("fetch", "--full", str(self.app)).stdout.strip()
        m: dict[str, object] = {
            "acKind": "PodManifest", "acVersion": "0.8.11",
            "apps": [{"name": "web", "image": {"name": "example.com/busybox", "id": image_id},
                      "app": {"exec": ["/bin/true"], "user": "0", "group": "0"}}],
        }  # fmt: skip
        change(m)
        path = self.files / f"{name}.json"
        path.write_text(json.dumps(m).replace(f'"{DEEP}"', "[" * 5000 + "]" * 5000))
        return f"--pod-manifest={path}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("inputs")
    files = base / "files"
    app = files / "busybox"
    (app / "rootfs/bin").mkdir(parents=True)
    (app / "rootfs/etc").mkdir()
    shutil.copy(shutil.which("busybox") or "/bin/busybox", app / "rootfs/bin/busybox")
    for applet in ("sh", "true"):
        (app / "rootfs/bin" / applet).symlink_to("busybox")
    (app / "rootfs/etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (app / "rootfs/etc/group").write_text("root:x:0:\n")
    app_aci = _aci(app, files / "busybox.aci", aci_manifest("example.com/busybox", {"app": {
        "exec": ["/bin/true"], "user": "0", "group": "0",
        "mountPoints": [{"name": "data", "path": "/data"}],
        "ports": [{"name": "http", "protocol": "tcp", "port": 80}],
    }}))  # fmt: skip
    evil_aci = _aci(app, files / "evil.aci", aci_manifest("example.com/evil", {"app": {
        "exec": ["/bin/true"], "user": "0", "group": "0",
        "mountPoints": [{"name": ESCAPE, "path": "/data"}],
    }}))  # fmt: skip
    s1 = files / "stage1"
    (s1 / "rootfs").mkdir(parents=True)
    for verb in VERBS:
        (s1 / "rootfs" / verb).write_text("#!/bin/sh\nexit 0\n")
        (s1 / "rootfs" / verb).chmod(0o755)
    kvm_stage1 = _aci(s1, files / "stage1-kvm-like.aci", aci_manifest(
        "example.com/stage1-kvm-like", {"annotations": stage1_annotations("kvm")}))
    (files / "folder").mkdir()
    (files / "file").write_text("a file\n")
    (files / "to-root").symlink_to("/")
    (files / "env").write_text("GOOD=1\n")
    lab = Lab(base, base / "data", files, app_aci, evil_aci, kvm_stage1)
    # the data dir's layout, the store, the default stage1: what a bad input meets
    warm = lab.rkt("prepare", str(app_aci), "--exec=/bin/true")
    assert warm.returncode == 0, warm.stderr
    lab.rkt("fetch", str(kvm_stage1))
    yield lab
    lab.rkt("gc", "--grace-period=0s", "--expire-prepared=0s")


def _annotation(size: int) -> Callable[[dict[str, object]], None]:
    return lambda m: m.update(annotations=[{"name": "a", "value": "x" * size}])


def _app(**kw: object) -> Callable[[dict[str, object]], None]:
    return lambda m: m["apps"][0]["app"].update(kw)  # type: ignore[index]


def _runtime_app(**kw: object) -> Callable[[dict[str, object]], None]:
    return lambda m: m["apps"][0].update(kw)  # type: ignore[index]


def _mount_empty(m: dict[str, object]) -> None:
    m["volumes"] = [{"name": "v", "kind": "empty", "mode": "0755", "uid": 0, "gid": 0}]
    m["apps"][0]["mounts"] = [{"volume": "v", "path": ""}]  # type: ignore[index]


def _deep(m: dict[str, object]) -> None:
    m["isolators"] = [{"name": "x/y", "value": DEEP}]  # lists 5000 deep, in the file


# (id, verb and arguments, the message's expected part); `{X}` names lab paths
CASES: list[tuple[str, Callable[[Lab], list[str]], str]] = [
    ("name-escaping", lambda x: ["run", "--net=none", str(x.app), f"--name={ESCAPE}"],
     "--name: invalid name '../../../../../escaped': ACName must contain only lower case"),
    ("name-escaping-prepare", lambda x: ["prepare", str(x.app), f"--name={ESCAPE}"],
     "--name: invalid name"),
    ("name-slash", lambda x: ["run", "--net=none", str(x.app), "--name=a/b"],
     "--name: invalid name 'a/b'"),
    ("name-dotdot", lambda x: ["run", "--net=none", str(x.app), "--name=.."],
     "--name: invalid name '..'"),
    ("name-upper-case", lambda x: ["run", "--net=none", str(x.app), "--name=Web"],
     "--name: invalid name 'Web'"),
    ("name-empty", lambda x: ["run", "--net=none", str(x.app), "--name="],
     "ACName cannot be empty"),
    ("name-300-chars", lambda x: ["run", "--net=none", str(x.app), "--name=" + "a" * 300],
     "longer than 128 characters"),
    ("exec-relative", lambda x: ["run", "--net=none", str(x.app), "--exec=bin/true"],
     "--exec must be absolute path: 'bin/true'"),
    ("exec-empty", lambda x: ["run", "--net=none", str(x.app), "--exec="],
     "nothing to execute"),
    ("working-dir-relative", lambda x: ["prepare", str(x.app), "--working-dir=tmp"],
     "--working-dir: 'tmp' is not an absolute path"),
    ("env-name", lambda x: ["prepare", str(x.app), "--environment=1A=b"],
     "not a valid environment variable name"),
    ("manifest-name-escaping",
     lambda x: ["run", "--net=none", x.pod_manifest("n", _runtime_app(name=ESCAPE))],
     "apps[0].name: invalid name"),
    ("manifest-exec-empty", lambda x: ["prepare", x.pod_manifest("e", _app(exec=[]))],
     "nothing to execute"),
    ("manifest-exec-relative",
     lambda x: ["prepare", x.pod_manifest("r", _app(exec=["bin/true"]))],
     "apps[0].app.exec must be absolute path"),
    ("manifest-mount-target-empty", lambda x: ["prepare", x.pod_manifest("m", _mount_empty)],
     "apps[0].mounts[0].path: empty path"),
    ("manifest-volume-name", lambda x: ["prepare", x.pod_manifest("v", lambda m: m.update(
        volumes=[{"name": ESCAPE, "kind": "empty"}]))],
     "volumes[0].name: invalid name"),
    ("manifest-nested-deep", lambda x: ["prepare", x.pod_manifest("d", _deep)],
     "pod manifest: nested more than 64 levels deep"),
    ("manifest-2MiB", lambda x: ["prepare", x.pod_manifest("b", _annotation(2 << 20))],
     "larger than 1024 KiB"),
    ("manifest-annotation-300KiB",
     lambda x: ["prepare", x.pod_manifest("a", _annotation(300 << 10))],
     "annotations: more than 256 KiB in all"),
    ("manifest-dev-zero", lambda x: ["prepare", "--pod-manifest=/dev/zero"],
     "cannot read --pod-manifest /dev/zero: not a regular file"),
    ("annotations-300KiB", lambda x: ["prepare", *[f"--annotation=a{i}=" + "x" * (100 << 10)
                                                   for i in range(3)], str(x.app)],
     "--annotation: more than 256 KiB in all"),
    ("set-env-file-dev-zero", lambda x: ["prepare", "--set-env-file=/dev/zero", str(x.app)],
     "cannot read --set-env-file /dev/zero: not a regular file"),
    ("volume-name", lambda x: ["prepare", f"--volume={ESCAPE},kind=empty", str(x.app)],
     "--volume: invalid name"),
    ("volume-source-link-to-root", lambda x: [
        "run", "--net=none", f"--volume=data,kind=host,source={x.files}/to-root", str(x.app)],
     "goes through a symbolic link (to /)"),
    ("volume-source-missing", lambda x: [
        "run", "--net=none", f"--volume=data,kind=host,source={x.files}/nope", str(x.app)],
     "No such file or directory"),
    ("volume-source-relative", lambda x: [
        "prepare", "--volume=data,kind=host,source=files/folder", str(x.app)],
     "is not an absolute path"),
    ("volume-source-device-kvm", lambda x: [
        "run", "--net=none", f"--stage1-path={x.kvm_stage1}",
        "--volume=data,kind=host,source=/dev/null", str(x.app)],
     "is neither a folder nor a regular file"),
    ("mount-target-empty", lambda x: [
        "run", "--net=none", f"--volume=v,kind=host,source={x.files}/folder", str(x.app),
        "--mount", "volume=v,target="],
     "--mount target: empty path"),
    ("mount-unknown-volume", lambda x: [
        "prepare", str(x.app), "--mount", "volume=nope,target=/x"],
     "no volume named 'nope'"),
    ("port-undefined", lambda x: ["prepare", "--port=db:8080", str(x.app)],
     "port name 'db' is not defined by any app"),
    ("user-unknown", lambda x: ["run", "--net=none", str(x.app), "--user=nobody-here"],
     "user 'nobody-here' not found in the image's /etc/passwd"),
    ("group-unknown", lambda x: ["run", "--net=none", str(x.app), "--group=nogroup-here"],
     "group 'nogroup-here' not found in the image's /etc/group"),
    ("capability-unknown", lambda x: ["run", "--net=none", str(x.app),
                                      "--caps-retain=CAP_BOGUS"],
     "unknown capability 'CAP_BOGUS'"),
    ("uuid-file-folder-missing", lambda x: [
        "prepare", f"--uuid-file-save={x.files}/nope/uuid", str(x.app)],
     "cannot write --uuid-file-save"),
    ("image-mount-point-escaping", lambda x: ["run", "--net=none", str(x.evil)],
     "mountPoints[0].name: invalid name"),
]  # fmt: skip


def _pods_state(data: Path) -> dict[str, tuple[int, list[str]]]:
    pods = data / "pods"
    return {f.name: (f.stat().st_mtime_ns, sorted(p.name for p in f.iterdir()))
            for f in sorted(pods.iterdir())}  # fmt: skip


def _cgroups() -> set[Path]:
    return {p for p in Path("/sys/fs/cgroup").glob("*/pyrkt/*") if UUID_RE.fullmatch(p.name)}


def _mounts_under(d: Path) -> list[str]:
    return [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines()
            if f" {d}" in ln]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), [(c[1], c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_refused_before_anything_exists(
    lab: Lab, argv: Callable[[Lab], list[str]], message: str
) -> None:
    args = argv(lab)
    before = _pods_state(lab.data)
    outside = sorted(os.listdir(lab.base))
    cgroups = _cgroups()
    cp = lab.rkt(*args)
    errors = [ln for ln in cp.stderr.splitlines()
              if not ln.startswith(("rkt: warning:", "image: warning:"))]
    assert cp.returncode == 254
    assert "Traceback" not in cp.stderr
    assert len(errors) == 1, errors
    assert message in errors[0]
    assert _pods_state(lab.data) == before, "a pod folder was made"
    assert sorted(os.listdir(lab.base)) == outside, "something was written outside"
    assert not (lab.base / "escaped").exists()
    pods = {p.name for p in (lab.data / "pods").glob("*/*")}
    assert {c for c in _cgroups() - cgroups if c.name in pods} == set()
    assert _mounts_under(lab.base) == []
