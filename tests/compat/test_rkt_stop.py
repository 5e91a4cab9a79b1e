"""rkt's tests/rkt_stop_test.go (every flavor): `rkt stop` of a running pod prints its
UUID and the pod exits; the app sees SIGTERM (and exits 0, as inspect --silent-sigterm);
`--force` kills the pod, and `rkt run` with it, by SIGKILL; `--uuid-file`. Also rkt's
stop output for a pod that already exited, one that is not running, one not found."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from rktcompat import ImageMaker, Rkt, on

pytestmark = pytest.mark.root

# inspect --read-stdin --silent-sigterm: waits, exits 0 on SIGTERM
SILENT_SIGTERM = ["/bin/sh", "-c", "trap 'exit 0' TERM; echo 'Enter text:'; "
                  "while :; do sleep 0.2; done"]  # fmt: skip


def wait_running(rkt: Rkt, uuid: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = rkt("status", uuid)
        if "state=running" in st.stdout and "pid=" in st.stdout:
            return
        time.sleep(0.5)
    raise AssertionError(f"pod {uuid} never ran")


def wait_exited(rkt: Rkt, uuid: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rkt.status(uuid)["state"] == "exited":
            return
        time.sleep(0.5)
    raise AssertionError(f"pod {uuid} did not exit")


@pytest.mark.parametrize(("flavor", "how"), [
    *[on("coreos", how) for how in ("stop", "force", "uuid-file")],
    on("kvm", "stop"), on("kvm", "uuid-file"), on("kvm", "force"),
])  # fmt: skip
def test_stop(flavor: str, rkt: Rkt, make_image: ImageMaker, tmp_path: Path,
              how: str) -> None:
    image = make_image(name="example.com/rkt-stop-test", app={"exec": SILENT_SIGTERM})
    prep = rkt.prepare(str(image))
    assert prep.returncode == 0, prep.stderr
    uuid = prep.stdout.strip()
    child = rkt.start(uuid, net="none", verb="run-prepared")
    assert child.stdout is not None
    assert child.stdout.readline() == "Enter text:\n"
    wait_running(rkt, uuid)
    args = ["--force", uuid] if how == "force" else [uuid]
    if how == "uuid-file":
        (tmp_path / "uuid").write_text(uuid)
        args = [f"--uuid-file={tmp_path / 'uuid'}"]
    cp = rkt("stop", *args)
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, f'"{uuid}"\n', "")
    child.communicate(timeout=300)
    if how == "force":  # rkt run ends as rkt's did: killed, not an exit status
        assert child.returncode == -signal.SIGKILL
    else:
        assert child.returncode == 0
    wait_exited(rkt, uuid)
    again = rkt("stop", uuid)  # rkt: not an error, a note on stdout
    assert (again.returncode, again.stdout, again.stderr) == (
        0, f'pod "{uuid}" is already stopped\n', "")


@pytest.mark.parametrize("flavor", [on("coreos"), on("kvm")])
def test_stop_during_a_pre_start_handler(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    """(pyrkt) `rkt stop` while a pre-start handler still runs stops it too (systemd
    stopped a unit in its ExecStartPre): the app never starts, `rkt run` ends."""
    handlers = [{"name": "pre-start", "exec": ["/bin/sh", "-c", "echo pre; exec sleep 600"]}]
    image = make_image(app={"exec": ["/bin/echo", "app"], "eventHandlers": handlers})
    uuid = rkt.prepare(str(image)).stdout.strip()
    child = rkt.start(uuid, net="none", verb="run-prepared")
    assert child.stdout is not None and child.stdout.readline() == "pre\n"
    wait_running(rkt, uuid)
    cp = rkt("stop", uuid)
    assert (cp.returncode, cp.stdout) == (0, f'"{uuid}"\n'), cp.stderr
    out, _ = child.communicate(timeout=300)
    assert (child.returncode, out) == (143, ""), out  # SIGTERM's, the handler's code
    wait_exited(rkt, uuid)
    assert rkt.status(uuid)["app-busybox"] == "143"


def test_stop_errors(rkt: Rkt, make_image: ImageMaker) -> None:
    prep = rkt.prepare(str(make_image(app={"exec": ["/bin/true"]})))
    uuid = prep.stdout.strip()
    cp = rkt("stop", uuid, "0f746094")
    assert cp.returncode == 254 and cp.stdout == ""
    assert cp.stderr.splitlines() == [f'stop: pod "{uuid}" is not running',
                                      'stop: cannot get pod: no matches found for "0f746094"',
                                      "stop: failed to stop 2 pod(s)"]
