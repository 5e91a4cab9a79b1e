"""rkt-runtime's command line against runc's, side by side: every test runs the same
commands with runc (Debian's 1.1.5, the reference) and with rkt-runtime and asserts the
same outcome: the OCI state JSON, the exit codes, the error cases (unknown id, create
twice, start twice, delete of a running container without --force).

rkt-runtime boots its VM at `start`; these tests never wait for a boot, so they are
quick, but `start` does launch QEMU (marker qemu)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyrkt.oci.state import alive
from support.oci import RUNTIME, leftovers, make_bundle, runtime_diagnostics

pytestmark = [pytest.mark.root, pytest.mark.qemu]

RUNTIMES = {"runc": "runc", "rkt-runtime": str(RUNTIME)}


class Rt:
    def __init__(self, binary: str, root: Path, bundle: Path) -> None:
        self.binary, self.root, self.bundle = binary, root, bundle

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # Files, not pipes: the container process keeps create's stdio (the container's)
        # open, as a shim's pipes, so a pipe would not reach its end.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            cp = subprocess.run([self.binary, "--root", str(self.root), *args],
                                stdout=out, stderr=err, timeout=timeout,
                                stdin=subprocess.DEVNULL, cwd=self.bundle, check=False)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(cp.args, cp.returncode, out.read(), err.read())

    def state(self, cid: str) -> dict[str, object]:
        cp = self("state", cid)
        assert cp.returncode == 0, cp.stderr
        data = json.loads(cp.stdout)
        assert isinstance(data, dict)
        return data


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle"), ["sleep", "60"])


@pytest.fixture(params=sorted(RUNTIMES))
def rt(request: pytest.FixtureRequest, tmp_path: Path, bundle: Path) -> Iterator[Rt]:
    if not shutil.which("runc"):
        pytest.skip("needs runc (Debian runc), the reference")
    r = Rt(RUNTIMES[request.param], tmp_path / "root", bundle)
    yield r
    for cid in (p.name for p in r.root.iterdir()) if r.root.is_dir() else []:
        r("delete", "--force", cid)
    if request.param == "rkt-runtime":
        left = leftovers(r.root)
        assert not left, f"{left}\n{runtime_diagnostics(r.root)}"


def cid() -> str:
    return f"oci-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("verb", [["state"], ["start"], ["kill"], ["delete"], ["ps"],
                                  ["exec", "--process", "/nonexistent"]])
def test_unknown_id_fails(rt: Rt, verb: list[str]) -> None:
    cp = rt(*verb, "no-such-container")
    assert cp.returncode == (255 if verb[0] == "exec" else 1)
    assert "does not exist" in cp.stderr or "not exist" in cp.stderr or "no such" in \
        cp.stderr.lower()


def test_delete_force_of_unknown_id_succeeds(rt: Rt) -> None:
    assert rt("delete", "--force", "no-such-container").returncode == 0


def test_state_json_of_a_created_container(rt: Rt, tmp_path: Path) -> None:
    c = cid()
    pid_file = tmp_path / "pid"
    cp = rt("create", "--bundle", str(rt.bundle), "--pid-file", str(pid_file), c)
    assert cp.returncode == 0, cp.stderr
    st = rt.state(c)
    assert {"ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"} <= set(st)
    assert st["id"] == c and st["status"] == "created"
    assert st["bundle"] == str(rt.bundle)
    assert st["rootfs"] == str(rt.bundle / "rootfs")
    assert st["pid"] == int(pid_file.read_text())
    assert os.path.exists(f"/proc/{st['pid']}")  # a host process stands for it
    assert str(st["created"]).endswith("Z")
    assert rt("delete", c).returncode == 0  # a created container needs no --force
    assert rt("state", c).returncode == 1
    assert not alive(int(str(st["pid"])), 0)  # the container process is gone


def test_create_twice_fails(rt: Rt) -> None:
    c = cid()
    assert rt("create", "--bundle", str(rt.bundle), c).returncode == 0
    cp = rt("create", "--bundle", str(rt.bundle), c)
    assert cp.returncode == 1 and "already exists" in cp.stderr
    assert rt.state(c)["status"] == "created"


def test_start_twice_and_delete_running(rt: Rt) -> None:
    c = cid()
    assert rt("create", "--bundle", str(rt.bundle), c).returncode == 0
    cp = rt("start", c)
    assert cp.returncode == 0, cp.stderr
    assert rt.state(c)["status"] == "running"
    cp = rt("start", c)
    assert cp.returncode == 1 and "already running" in cp.stderr
    cp = rt("delete", c)
    assert cp.returncode == 1 and "not stopped" in cp.stderr
    assert rt.state(c)["status"] == "running"
    assert rt("delete", "--force", c).returncode == 0
    assert rt("state", c).returncode == 1


def test_kill_then_stopped(rt: Rt) -> None:
    c = cid()
    assert rt("create", "--bundle", str(rt.bundle), c).returncode == 0
    assert rt("start", c).returncode == 0
    assert rt("kill", c, "KILL").returncode == 0
    import time

    deadline = time.monotonic() + 30
    while rt.state(c)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.1)
    st = rt.state(c)
    assert st["status"] == "stopped"
    cp = rt("kill", c, "TERM")
    assert cp.returncode == 1 and "not running" in cp.stderr
    cp = rt("start", c)
    assert cp.returncode == 1 and "stopped" in cp.stderr
    assert rt("delete", c).returncode == 0


def test_unknown_signal_fails(rt: Rt) -> None:
    c = cid()
    assert rt("create", "--bundle", str(rt.bundle), c).returncode == 0
    cp = rt("kill", c, "BOGUS")
    assert cp.returncode == 1 and "unknown signal" in cp.stderr
    assert rt("delete", "--force", c).returncode == 0


def test_features_and_version(rt: Rt) -> None:
    cp = rt("features")
    assert cp.returncode == 0
    f = json.loads(cp.stdout)
    assert f["ociVersionMin"] == "1.0.0" and "linux" in f
    cp = rt("--version")
    assert cp.returncode == 0 and "spec: 1.0." in cp.stdout
