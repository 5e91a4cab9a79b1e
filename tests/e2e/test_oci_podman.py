"""podman 4.3 (Debian's) runs VM-isolated containers through `--runtime=rkt-runtime`,
with a private store (tests/support/oci.py). Output and exit codes, -d/exec/stop/rm,
a terminal (-it, through pexpect) and a published port served from the guest.
podman gives the runtime no --root: it keeps the default, /run/pyrkt-runtime."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.net import free_port, http_get
from support.oci import (
    Podman,
    busybox_rootfs_tar,
    guest_release,
    leftovers,
    podman,
    runtime_diagnostics,
)

pytestmark = [pytest.mark.root, pytest.mark.qemu]

IMAGE = "localhost/busybox:1"


@pytest.fixture(scope="module")
def pm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    if not shutil.which("podman"):
        pytest.skip("needs Debian's podman")
    work = tmp_path_factory.mktemp("podman")
    tar = busybox_rootfs_tar(work / "image")
    with podman(work / "p") as p:
        cp = p("import", str(tar), IMAGE)
        assert cp.returncode == 0, cp.stderr
        yield p


def check(pm: Podman, cp: subprocess.CompletedProcess[str], code: int) -> None:
    assert cp.returncode == code, \
        f"{cp.args}\n{cp.stdout}\n{cp.stderr}\n{runtime_diagnostics(pm.runtime_root)}"


def gone(pm: Podman, cid: str) -> None:
    left = [x for x in leftovers(pm.runtime_root) if cid in x]
    assert not left, left


def test_run_rm_prints_guest_kernel_and_exit_code(pm: Podman) -> None:
    cp = pm("run", "--rm", IMAGE, "sh", "-c", "uname -r; echo hi; exit 3")
    check(pm, cp, 3)
    assert cp.stdout.split() == [guest_release(), "hi"]
    assert guest_release() != os.uname().release
    assert pm("ps", "-a", "-q").stdout.strip() == ""


def test_detached_exec_stop_rm(pm: Podman) -> None:
    cp = pm("run", "-d", "--name", "svc", IMAGE, "sh", "-c",
            "trap 'exit 0' TERM; while :; do sleep 1; done")
    check(pm, cp, 0)
    cid = cp.stdout.strip()
    cp = pm("exec", "svc", "sh", "-c", "echo in-exec; exit 6")
    check(pm, cp, 6)
    assert cp.stdout.strip() == "in-exec"
    cp = pm("exec", "-i", "svc", "cat")
    check(pm, cp, 0)
    cp = subprocess.run(pm.argv("exec", "-i", "svc", "tr", "a-z", "A-Z"), input="piped\n",
                        capture_output=True, text=True, timeout=300, check=False)
    check(pm, cp, 0)
    assert cp.stdout == "PIPED\n"
    check(pm, pm("stop", "-t", "30", "svc"), 0)
    assert pm("inspect", "--format", "{{.State.ExitCode}}", "svc").stdout.strip() == "0"
    check(pm, pm("rm", "svc"), 0)
    gone(pm, cid)


SCRIPT = ("tty; read -r name; echo \"hello-$name\"; trap 'echo got-INT; exit 4' INT; "
          "echo ready; while :; do sleep 1; done")


def test_terminal(pm: Podman) -> None:
    import pexpect

    argv = pm.argv("run", "-it", "--rm", IMAGE, "sh", "-c", SCRIPT)
    c = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", timeout=300)
    log: list[str] = []
    c.logfile_read = _Collect(log)
    try:
        c.expect("/dev/ttyS1")  # the guest's serial line is the container's terminal
        c.sendline("bob")
        c.expect("hello-bob")
        c.expect("ready")
        c.sendcontrol("c")  # a byte on the pty; the guest's terminal makes it SIGINT
        c.expect("got-INT")
        c.expect(pexpect.EOF)
    except pexpect.ExceptionPexpect as e:
        text = "".join(log)
        raise AssertionError(f"{e}\n{text}\n{runtime_diagnostics(pm.runtime_root)}") from e
    finally:
        c.close()
    assert c.exitstatus == 4, "".join(log)


class _Collect:
    def __init__(self, into: list[str]) -> None:
        self.into = into

    def write(self, s: str) -> None:
        self.into.append(s)

    def flush(self) -> None:
        pass


@pytest.mark.cni
def test_published_port_served_from_the_guest(pm: Podman, tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("served from the guest\n")
    port = free_port()
    cp = pm("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "-v",
            f"{www}:/www:ro", IMAGE, "httpd", "-f", "-p", "80", "-h", "/www")
    check(pm, cp, 0)
    cid = cp.stdout.strip()
    try:
        body = http_get("127.0.0.1", port, "/index.html", tries=600, pause=0.5)
        assert body == "served from the guest\n"
        cp = pm("exec", "web", "cat", "/proc/version")
        assert guest_release() in cp.stdout
    finally:
        print(runtime_diagnostics(pm.runtime_root), file=sys.stderr)
        pm("rm", "-f", "-t", "5", "web")
    gone(pm, cid)
