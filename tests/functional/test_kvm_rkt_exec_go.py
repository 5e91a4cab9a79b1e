"""The guest init's own steps in `rkt-exec`, on the host, no VM: `--go` (a template's
side of the handshake: "ready", the host's go, "ok" or "failed") over a pty standing for
the rkt.go port, and `--mount` (the pod shares of a booted pod). Only the paths that do
not take a go (which sets the clock and feeds the RNG: the VM's, never the host's);
the e2e template tests restore real pods."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root]


class Port:
    """A pty in raw mode: rkt-exec opens its device as the rkt.go port, the test is the
    host on the other side."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)

    def read_line(self) -> bytes:
        out = b""
        while not out.endswith(b"\n"):
            chunk = os.read(self.master, 64)
            if not chunk:
                break
            out += chunk
        return out

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def port() -> Iterator[Port]:
    p = Port()
    yield p
    p.close()


def start_go(rkt_exec: Path, port: Port, mounts: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([rkt_exec, "--go", port.path, str(mounts)], text=True,
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.parametrize(("sent", "said"), [
    (b"stop 1 2 ab\n", "rkt-exec: go stop"),  # not a go
    (b"go 1700000000\n", "usage: rkt-exec --restore"),  # a go without its seed
    (b"a" * 5120, "rkt-exec: go (line)"),  # longer than its bound, no newline
])
def test_go_says_ready_and_answers_failed_to_a_go_it_cannot_take(
        rkt_exec: Path, port: Port, tmp_path: Path, sent: bytes, said: str) -> None:
    p = start_go(rkt_exec, port, tmp_path / "never-read")
    assert port.read_line() == b"ready\n"
    for i in range(0, len(sent), 1024):
        os.write(port.master, sent[i:i + 1024])
    assert port.read_line() == b"failed\n"  # the host boots the pod instead
    _, err = p.communicate(timeout=30)
    assert p.returncode == 127 and said in err, err
    assert "never-read" not in err  # no mount was tried


def test_go_ends_quietly_when_the_host_goes_away(
        rkt_exec: Path, port: Port, tmp_path: Path) -> None:
    p = start_go(rkt_exec, port, tmp_path / "never-read")
    assert port.read_line() == b"ready\n"
    os.close(port.master)  # the template's QEMU quits after the save
    _, err = p.communicate(timeout=30)
    assert p.returncode == 1 and err == ""


def test_mount_makes_the_steps_of_its_plan(rkt_exec: Path, tmp_path: Path) -> None:
    target = tmp_path / "ctl"
    target.mkdir()
    plan = tmp_path / "rkt-mounts"
    plan.write_text(f"mount rkt.test {target} tmpfs mode=0711,size=1m\n")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        f'"$0" --mount {plan} && stat -c %a {target} && '
                        f"grep -F ' {target} ' /proc/self/mounts", str(rkt_exec)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    mode, line = r.stdout.splitlines()
    assert mode == "711" and line.startswith(f"rkt.test {target} tmpfs ")


def test_mount_says_which_share_it_could_not_mount(rkt_exec: Path, tmp_path: Path) -> None:
    plan = tmp_path / "rkt-mounts"
    plan.write_text(f"mount rkt.none {tmp_path / 'missing'} tmpfs -\n")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", str(rkt_exec),
                        "--mount", str(plan)], capture_output=True, text=True, check=False)
    assert r.returncode == 127
    assert f"rkt-exec: mount {tmp_path / 'missing'}: No such file or directory" in r.stderr
