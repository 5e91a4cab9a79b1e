"""containerd 1.6 (Debian's, started by the fixture on a private socket and root) runs
VM-isolated containers through rkt-runtime: `ctr run --runc-binary rkt-runtime`,
its runc v2 shim driving our runc command line. A failing test prints containerd's log
and every container's QEMU command line and serial log."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.oci import RUNTIME, Containerd, busybox_archive, containerd, guest_release, leftovers

pytestmark = [pytest.mark.root, pytest.mark.qemu]

IMAGE = "localhost/busybox:1"


@pytest.fixture(scope="module")
def ctd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    if not shutil.which("containerd") or not shutil.which("ctr"):
        pytest.skip("needs Debian's containerd (containerd, ctr)")
    work = tmp_path_factory.mktemp("ctd")
    archive = busybox_archive(work / "image")
    with containerd(work / "c") as c:
        cp = c.ctr("image", "import", "--base-name", "localhost/busybox", str(archive))
        assert cp.returncode == 0, cp.stderr
        yield c


def check(ctd: Containerd, cp: subprocess.CompletedProcess[str], code: int) -> None:
    assert cp.returncode == code, f"{cp.stdout}\n{cp.stderr}\n{ctd.diagnostics()}"


def run(ctd: Containerd, name: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return ctd.ctr("run", "--rm", "--runc-binary", str(RUNTIME), IMAGE, name, *cmd)


def nothing_left(ctd: Containerd) -> None:
    left = leftovers(ctd.runtime_root)
    assert not left, f"{left}\n{ctd.diagnostics()}"
    assert ctd.ctr("container", "ls", "-q").stdout.strip() == ""


def test_run_prints_the_guests_output_and_exit_code(ctd: Containerd) -> None:
    cp = run(ctd, "once", "sh", "-c", "uname -r; echo hi; exit 3")
    check(ctd, cp, 3)
    lines = cp.stdout.split()
    assert lines == [guest_release(), "hi"]
    assert lines[0] != os.uname().release  # the guest's kernel, not the host's
    nothing_left(ctd)


def wait_status(ctd: Containerd, task: str, status: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = ctd.ctr("task", "ls").stdout
        if any(line.split()[:1] == [task] and status in line for line in out.splitlines()):
            return out
        time.sleep(0.3)
    raise AssertionError(f"task {task} not {status}: {out}\n{ctd.diagnostics()}")


def test_task_exec_kill_delete(ctd: Containerd) -> None:
    cp = ctd.ctr("run", "-d", "--runc-binary", str(RUNTIME), IMAGE, "svc", "sh", "-c",
                 "trap 'exit 9' TERM; echo up; while :; do sleep 1; done")
    check(ctd, cp, 0)
    wait_status(ctd, "svc", "RUNNING")
    cp = ctd.ctr("task", "exec", "--exec-id", "e1", "svc", "sh", "-c",
                 "echo from-exec; cat /proc/1/comm >/dev/null; exit 5")
    check(ctd, cp, 5)
    assert cp.stdout.strip() == "from-exec"
    cp = ctd.ctr("task", "exec", "--exec-id", "e2", "svc", "uname", "-r")
    check(ctd, cp, 0)
    assert cp.stdout.strip() == guest_release()
    pids = ctd.ctr("task", "ps", "svc").stdout
    assert len(pids.splitlines()) >= 2, pids  # the container process (and its QEMU)
    check(ctd, ctd.ctr("task", "kill", "svc"), 0)  # SIGTERM, into the guest
    wait_status(ctd, "svc", "STOPPED")
    cp = ctd.ctr("task", "delete", "svc")
    check(ctd, cp, 0)
    assert "exit code 9" in cp.stderr or "9" in cp.stdout  # the trap's code
    check(ctd, ctd.ctr("container", "delete", "svc"), 0)
    nothing_left(ctd)


def test_kill_9_and_delete(ctd: Containerd) -> None:
    check(ctd, ctd.ctr("run", "-d", "--runc-binary", str(RUNTIME), IMAGE, "k9", "sleep",
                       "600"), 0)
    wait_status(ctd, "k9", "RUNNING")
    check(ctd, ctd.ctr("task", "kill", "-s", "KILL", "k9"), 0)
    wait_status(ctd, "k9", "STOPPED")
    cp = ctd.ctr("task", "delete", "k9")
    check(ctd, cp, 0)
    assert "137" in cp.stderr + cp.stdout
    check(ctd, ctd.ctr("container", "delete", "k9"), 0)
    nothing_left(ctd)


def test_five_in_a_row_and_three_at_once(ctd: Containerd) -> None:
    for i in range(5):
        cp = run(ctd, f"row{i}", "sh", "-c", f"echo row {i}")
        check(ctd, cp, 0)
        assert cp.stdout.strip() == f"row {i}"
    procs = [
        subprocess.Popen(["ctr", "--address", ctd.address, "-n", ctd.namespace, "run", "--rm",
                          "--runc-binary", str(RUNTIME), IMAGE, f"par{i}", "sh", "-c",
                          f"echo par {i}; exit {i + 1}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL)
        for i in range(3)
    ]
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=600)
        assert p.returncode == i + 1, f"{out}\n{err}\n{ctd.diagnostics()}"
        assert out.strip() == f"par {i}"
    nothing_left(ctd)
    assert not Path(ctd.runtime_root).exists() or not any(Path(ctd.runtime_root).iterdir())
