"""`rkt enter` with a terminal, both relay ends without a VM: the guest's real
`rkt-exec --tty` (built as for the initramfs) on a socketpair instead of the rkt.tty
virtio-serial port, and the host's `ttysession` relay. Root: rkt-exec chroots."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyrkt.stage1.kvm import ttysession

pytestmark = [pytest.mark.root]


class Session:
    def __init__(self, rkt_exec: Path, script: str, env: dict[str, str]) -> None:
        self.host, guest = socket.socketpair()
        self.proc = subprocess.Popen(
            [str(rkt_exec), "--tty", f"fd:{guest.fileno()}", "rid1", "/", "/tmp", "0", "0",
             "-", "all", "0", "-", "--", "/bin/sh", "-c", script],
            pass_fds=[guest.fileno()], env=env, stdin=subprocess.DEVNULL,
        )
        guest.close()

    def run(self, tmp: Path, *steps: tuple[str, bytes]) -> tuple[int, str]:
        """Relays the command's terminal: for each step (wait for this text in the
        output, then type these bytes), then EOF; its exit code and terminal output."""
        pending = ttysession.wait_ready(self.host, "rid1", lambda: self.proc.poll() is None)
        r, w = os.pipe()
        out = tmp / "out"
        out.write_bytes(b"")

        def typist() -> None:
            try:
                for expect, typed in steps:
                    deadline = time.monotonic() + 60
                    while expect not in out.read_text(errors="replace"):
                        if time.monotonic() > deadline:
                            return
                        time.sleep(0.05)
                    os.write(w, typed)
            finally:
                os.close(w)

        t = threading.Thread(target=typist)
        t.start()
        with open(out, "ab", buffering=0) as f:
            try:
                rc = ttysession.relay(self.host, r, f.fileno(), pending)
            finally:
                t.join()
                os.close(r)
        assert self.proc.wait(timeout=60) == 0  # the relay itself
        return rc, out.read_text(errors="replace")

    def close(self) -> None:
        self.host.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def session(rkt_exec: Path) -> Iterator[list[Session]]:
    made: list[Session] = []
    yield made
    for s in made:
        s.close()


def start(made: list[Session], rkt_exec: Path, script: str) -> Session:
    s = Session(rkt_exec, script, {"PATH": "/usr/bin:/bin", "TERM": "vt100"})
    made.append(s)
    return s


def test_command_gets_a_pty_of_our_size_and_its_exit_code_comes_back(
    session: list[Session], rkt_exec: Path, tmp_path: Path
) -> None:
    s = start(session, rkt_exec, "tty; stty size; pwd; echo term=$TERM; exit 5")
    rc, out = s.run(tmp_path)
    assert rc == 5
    lines = out.splitlines()
    assert lines[0].startswith("/dev/pts/"), out
    assert lines[1:4] == ["24 80", "/tmp", "term=vt100"]  # 24x80: our stdin is no tty


def test_typed_input_reaches_the_command_and_ctrl_c_interrupts_it(
    session: list[Session], rkt_exec: Path, tmp_path: Path
) -> None:
    s = start(session, rkt_exec, "echo ready; read line; echo got=$line; exec sleep 100")
    rc, out = s.run(tmp_path, ("ready", b"hello\r"), ("got=hello", b"\x03"))
    assert rc == 130, out  # 128 + SIGINT: the pty turned Ctrl-C into the signal
    assert "got=hello" in out


def test_the_host_leaving_hangs_the_session_up(
    session: list[Session], rkt_exec: Path
) -> None:
    s = start(session, rkt_exec, "exec sleep 100")
    ttysession.wait_ready(s.host, "rid1", lambda: s.proc.poll() is None)
    s.host.sendall(ttysession.winsize_frame(24, 80))
    s.host.close()
    assert s.proc.wait(timeout=60) == 0
