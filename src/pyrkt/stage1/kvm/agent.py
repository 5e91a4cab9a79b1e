"""Host side of the guest agent: one request line on the rkt.agent virtio-serial port.

QEMU listens on `POD/kvm/agent.sock` (one client at a time); the guest init's
`rkt_agent` reads `enter ID` / `stop` / `ping` and answers one line. Bulk data (the
command, its output) goes through the 9p share under `POD/kvm/ctl/enter/ID/` (the guest's /ctl).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from pyrkt import log
from pyrkt.errors import RktError
from pyrkt.stage1.kvm import runner
from pyrkt.stage1.kvm.guest import script

READY_TIMEOUT_S = 300.0


def wait_started(pod: Path, timeout: float = READY_TIMEOUT_S) -> None:
    """Until the guest has started the apps (it writes /ctl/started)."""
    flag = runner.guest_dir(pod) / "started"
    deadline = time.monotonic() + timeout
    while not flag.exists():
        if not _hypervisor_alive(pod):
            raise RktError("the pod's VM is not running")
        if time.monotonic() > deadline:
            raise RktError(f"the pod's VM did not start its apps within {timeout:.0f}s")
        time.sleep(0.1)


def _hypervisor_alive(pod: Path) -> bool:
    try:
        pid = int((pod / "pid").read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def connect(pod: Path, timeout: float = 10.0) -> Iterator[socket.socket]:
    """A connection to the agent socket (path through a folder fd: no length limit)."""
    d = os.open(runner.kvm_dir(pod), os.O_RDONLY | os.O_DIRECTORY)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                s.connect(f"/proc/self/fd/{d}/agent.sock")
                break
            except (ConnectionRefusedError, FileNotFoundError) as e:
                if time.monotonic() > deadline:
                    raise RktError("cannot reach the pod's VM agent", str(e)) from e
                time.sleep(0.1)
        yield s
    finally:
        s.close()
        os.close(d)


def _request(pod: Path, line: str, timeout: float | None) -> str:
    with connect(pod) as s:
        s.settimeout(timeout)
        s.sendall(line.encode() + b"\n")
        buf = b""
        try:
            while not buf.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    raise RktError("the pod's VM agent closed the connection")
                buf += chunk
        except TimeoutError as e:
            raise RktError(f"no answer from the pod's VM agent to {line.split()[0]!r}") from e
    return buf.decode(errors="replace").strip()


def stop(pod: Path, timeout: float = 30.0) -> None:
    """Ask the guest to SIGTERM its apps (the VM powers off once they exited)."""
    answer = _request(pod, "stop", timeout)
    if answer != "ok":
        raise RktError(f"the pod's VM agent refused to stop: {answer}")


def enter(pod: Path, app: str, cmd: Sequence[str]) -> int:
    """Run cmd in app's root inside the guest; copy its output to ours; its exit code."""
    prefix_file = runner.guest_dir(pod) / "apps" / app
    try:
        prefix = prefix_file.read_text().strip()
    except OSError as e:
        raise RktError(f"the pod has no app named {app!r}") from e
    wait_started(pod)
    rid = secrets.token_hex(6)
    d = runner.guest_dir(pod) / "enter" / rid
    d.mkdir(parents=True)
    try:
        (d / "cmd.sh").write_text(
            "exec " + prefix + " " + " ".join(script.q(a) for a in cmd) + "\n"
        )
        stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
        (d / "stdin").write_bytes(stdin)
        log.debug(f"kvm: enter {rid}: {cmd!r} in app {app}")
        answer = _request(pod, f"enter {rid}", None)
        parts = answer.split()
        if len(parts) != 3 or parts[0] != "done" or parts[1] != rid:
            raise RktError(f"unexpected answer from the pod's VM agent: {answer!r}")
        sys.stdout.buffer.write((d / "stdout").read_bytes())
        sys.stdout.flush()
        sys.stderr.buffer.write((d / "stderr").read_bytes())
        sys.stderr.flush()
        return int(parts[2])
    finally:
        shutil.rmtree(d, ignore_errors=True)
