"""Host side of the guest agent: one request line on the rkt.agent virtio-serial port.

QEMU listens on `POD/kvm/agent.sock` (one client at a time); the guest init's
`rkt_agent` reads `enter ID` / `stop` / `ping` and answers one line. Bulk data (the
command, its output) goes through the 9p share under `POD/kvm/ctl/enter/ID/` (the guest's /ctl).
With a terminal (our stdin is a tty), `tty ID` starts the command on a pty in the guest,
relayed over the rkt.tty port (`POD/kvm/tty.sock`, see `ttysession`); one such session
at a time per pod (`POD/kvm/tty.lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shlex
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
TTY_PORT = "rkt.tty"  # the virtio-serial port's name (runner: tty_socket_rel)
TTY_SOCKET = "tty.sock"
TTY_LOCK = "tty.lock"


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
def connect(
    pod: Path, timeout: float = 10.0, name: str = "agent.sock"
) -> Iterator[socket.socket]:
    """A connection to the agent socket, or another of POD/kvm/ (path through a folder
    fd: no length limit)."""
    d = os.open(runner.kvm_dir(pod), os.O_RDONLY | os.O_DIRECTORY)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                s.connect(f"/proc/self/fd/{d}/{name}")
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


def stop_or_say(pod: Path, timeout: float, fallback: str) -> bool:
    """`stop`; False, with a warning naming the fallback the caller takes, if it failed."""
    try:
        stop(pod, timeout)
        return True
    except RktError as e:
        log.warn(f"graceful stop failed ({e}); {fallback}")
        return False


def enter(pod: Path, app: str, cmd: Sequence[str]) -> int:
    """Run cmd in app's root inside the guest, on a terminal of its own when our stdin is
    one, else with our stdin's bytes and its output copied to ours; its exit code."""
    prefix_file = runner.guest_dir(pod) / "apps" / app
    try:
        prefix = prefix_file.read_text().strip()
    except OSError as e:
        raise RktError(f"the pod has no app named {app!r}") from e
    wait_started(pod)
    if sys.stdin is not None and sys.stdin.isatty():
        return enter_tty(pod, prefix, cmd)
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


def tty_command(prefix: str, rid: str, cmd: Sequence[str], term: str | None) -> str:
    """cmd.sh for a terminal session: the app's exec prefix (`env -i ENV /bin/rkt-exec
    ARGS --`) with `--tty PORT RID`, TERM from ours (the app's own TERM wins), and cmd."""
    words = shlex.split(prefix)
    # env's command: its first word that is not an assignment
    i = next((n for n, w in enumerate(words) if n >= 2 and "=" not in w), 0)
    if i < 2 or words[:2] != ["env", "-i"] or not words[i].endswith("/rkt-exec") \
            or words[-1] != "--":
        raise RktError("the pod's app exec line is not the one this pyrkt writes",
                       "was the pod started by another version?")
    env = words[:i]
    if term:
        env.insert(2, f"TERM={term}")
    argv = [*env, words[i], "--tty", TTY_PORT, rid, *words[i + 1 :], *cmd]
    return "exec " + shlex.join(argv) + "\n"


@contextlib.contextmanager
def _tty_lock(pod: Path) -> Iterator[None]:
    fd = os.open(runner.kvm_dir(pod) / TTY_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise RktError(
                "another terminal session is open in this pod",
                "one `rkt enter` with a terminal at a time per VM pod; leave it first, "
                "or give the command no terminal (stdin not a tty)",
            ) from e
        yield
    finally:
        os.close(fd)


def enter_tty(pod: Path, prefix: str, cmd: Sequence[str]) -> int:
    from pyrkt.stage1.kvm import ttysession

    if not (runner.kvm_dir(pod) / TTY_SOCKET).exists():
        raise RktError("the pod's VM has no terminal port",
                       "it was started by an older pyrkt; enter without a terminal")
    rid = secrets.token_hex(6)
    d = runner.guest_dir(pod) / "enter" / rid
    with _tty_lock(pod), connect(pod, name=TTY_SOCKET) as sock:
        d.mkdir(parents=True)
        try:
            (d / "cmd.sh").write_text(tty_command(prefix, rid, cmd, os.environ.get("TERM")))
            log.debug(f"kvm: enter {rid} with a terminal: {list(cmd)!r}")
            answer = _request(pod, f"tty {rid}", 30.0)
            if answer != f"started {rid}":
                raise RktError(f"unexpected answer from the pod's VM agent: {answer!r}")
            try:
                pending = ttysession.wait_ready(sock, rid, lambda: _hypervisor_alive(pod))
            except RktError as e:
                guest_log = (d / "log").read_text(errors="replace").strip() if (
                    d / "log").exists() else ""
                raise RktError(e.message, guest_log or e.hint) from e
            with ttysession.raw_terminal(sys.stdin.fileno()):
                return ttysession.relay(sock, sys.stdin.fileno(), sys.stdout.fileno(), pending)
        finally:
            shutil.rmtree(d, ignore_errors=True)
