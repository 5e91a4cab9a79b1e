"""Host side of the guest agent: one request line on the rkt.agent virtio-serial port.

QEMU listens on `POD/kvm/agent.sock` (one client at a time); the guest init's
`rkt_agent` reads `enter ID` / `stop` / `ping` and answers one line. Bulk data (the
command, its output) goes through the 9p share under `POD/kvm/ctl/enter/ID/` (the guest's /ctl),
which the guest can write: every path in it goes through `pyrkt.linux.beneath`.
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
import signal
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from pyrkt import log
from pyrkt.errors import RktError
from pyrkt.linux import beneath
from pyrkt.stage1.kvm import runner
from pyrkt.stage1.kvm.guest import script

READY_TIMEOUT_S = 300.0
TTY_PORT = "rkt.tty"  # the virtio-serial port's name (runner: tty_socket_rel)
TTY_SOCKET = "tty.sock"
TTY_LOCK = "tty.lock"
# What the host reads from the guest, at most (it is hostile input): an agent answer
# ("done ID RC"), an app's exec line (its environment included), an error log.
ANSWER_MAX = 4096
PREFIX_MAX = 1 << 20
GUEST_LOG_MAX = 64 * 1024


def _started(pod: Path) -> bool:
    try:
        with beneath.Root(runner.guest_dir(pod)) as ctl:
            return ctl.is_regular("started")
    except OSError:
        return False


def wait_started(pod: Path, timeout: float = READY_TIMEOUT_S) -> None:
    """Until the guest has started the apps (it writes /ctl/started)."""
    deadline = time.monotonic() + timeout
    while not _started(pod):
        # No pid yet: its hypervisor is not started yet (the first pod of a shape makes
        # its VM template first, seconds under TCG); the pod folder gone: it ended.
        launched = (pod / "pid").exists()
        if (launched and not _hypervisor_alive(pod)) or not pod.is_dir():
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
                if len(buf) > ANSWER_MAX:  # the guest's answers are one short line
                    raise RktError("the pod's VM agent sent an over-long answer")
                chunk = s.recv(4096)
                if not chunk:
                    raise RktError("the pod's VM agent closed the connection")
                buf += chunk
        except TimeoutError as e:
            raise RktError(f"no answer from the pod's VM agent to {line.split()[0]!r}") from e
    return buf.decode(errors="replace").strip()


def stop(pod: Path, timeout: float = 30.0, sig: int = signal.SIGTERM) -> None:
    """Ask the guest to stop its apps: sig (SIGTERM, or SIGINT: a Ctrl-C on `rkt run`),
    SIGKILL after the grace time (the VM powers off once they exited)."""
    answer = _request(pod, "stop" if sig == signal.SIGTERM else f"stop {int(sig)}", timeout)
    if answer != "ok":
        raise RktError(f"the pod's VM agent refused to stop: {answer}")


def signal_apps(pod: Path, sig: int, target: str = "", timeout: float = 30.0) -> None:
    """Send signal number sig to the apps in the guest; target "all": to every process
    but the init and the agent; else guest pids (the OCI runtime's `kill`, `exec`)."""
    answer = _request(pod, f"kill {int(sig)} {target}".rstrip(), timeout)
    if answer != "ok":
        raise RktError(f"the pod's VM agent refused to send the signal: {answer}")


def start_exec(pod: Path, rid: str, timeout: float = 30.0) -> None:
    """Start /ctl/enter/RID/cmd.sh in the guest in the background; its output lands in
    that folder, and its exit code in `rc` when it ends (the OCI runtime's `exec`)."""
    answer = _request(pod, f"exec {rid}", timeout)
    if answer != f"started {rid}":
        raise RktError(f"unexpected answer from the pod's VM agent: {answer!r}")


def stop_or_say(pod: Path, timeout: float, fallback: str,
                sig: int = signal.SIGTERM) -> bool:
    """`stop`; False, with a warning naming the fallback the caller takes, if it failed."""
    try:
        stop(pod, timeout, sig)
        return True
    except RktError as e:
        log.warn(f"graceful stop failed ({e}); {fallback}")
        return False


def _app_prefix(pod: Path, app: str) -> str:
    """The app's exec line (rkt-exec ... --) the runner left in /ctl/apps/APP."""
    try:
        with beneath.Root(runner.guest_dir(pod)) as ctl:
            prefix = ctl.read_text(f"apps/{app}", PREFIX_MAX).strip()
    except FileNotFoundError as e:
        raise RktError(f"the pod has no app named {app!r}") from e
    except OSError as e:
        raise RktError(f"cannot read app {app!r}'s exec line from the pod: {e}") from e
    if not prefix or "\n" in prefix:
        raise RktError(f"app {app!r}'s exec line in the pod is not one line")
    return prefix


@contextlib.contextmanager
def _request_dir(pod: Path, rid: str) -> Iterator[beneath.Root]:
    """/ctl/enter/RID, made for this request under the folder fds (a symlink the guest
    left in /ctl is refused, never followed), removed afterwards the same way."""
    try:
        ctl = beneath.Root(runner.guest_dir(pod))
    except OSError as e:
        raise RktError(f"cannot open the pod's control folder: {e}") from e
    with ctl:
        try:
            ctl.mkdir("enter", 0o755, exist_ok=True)
            enter_dir = ctl.open_dir("enter")
        except OSError as e:
            raise RktError(f"the pod's control folder was tampered with: {e}") from e
        with enter_dir:
            try:
                enter_dir.mkdir(rid, 0o755)
                d = enter_dir.open_dir(rid)
            except OSError as e:
                raise RktError(f"the pod's control folder was tampered with: {e}") from e
            try:
                with d:
                    yield d
            finally:
                with contextlib.suppress(OSError):
                    enter_dir.rmtree(rid)


request_dir = _request_dir  # the OCI runtime's exec makes its requests the same way


def _write_request(d: beneath.Root, name: str, data: str | bytes) -> None:
    try:
        d.write(name, data, 0o644, replace=False)
    except OSError as e:
        raise RktError(f"cannot write the request's {name} in the pod: {e}") from e


def _copy_out(d: beneath.Root, name: str, fd: int) -> None:
    try:
        d.copy_to(name, fd)
    except BrokenPipeError:
        raise
    except OSError as e:  # missing, a symlink, a FIFO, a device...: the guest's doing
        raise RktError(f"cannot read the command's {name} in the pod: {e}") from e


def enter(pod: Path, app: str, cmd: Sequence[str]) -> int:
    """Run cmd in app's root inside the guest, on a terminal of its own when our stdin is
    one, else with our stdin's bytes and its output copied to ours; its exit code."""
    prefix = _app_prefix(pod, app)
    wait_started(pod)
    if sys.stdin is not None and sys.stdin.isatty():
        return enter_tty(pod, prefix, cmd)
    rid = secrets.token_hex(6)
    stdin = b"" if sys.stdin is None else sys.stdin.buffer.read()
    with _request_dir(pod, rid) as d:
        _write_request(d, "cmd.sh",
                       "exec " + prefix + " " + " ".join(script.q(a) for a in cmd) + "\n")
        _write_request(d, "stdin", stdin)
        log.debug(f"kvm: enter {rid}: {cmd!r} in app {app}")
        answer = _request(pod, f"enter {rid}", None)
        parts = answer.split()
        if len(parts) != 3 or parts[0] != "done" or parts[1] != rid or not (
                parts[2].isdigit() and int(parts[2]) <= 255):
            raise RktError(f"unexpected answer from the pod's VM agent: {answer!r}")
        sys.stdout.flush()
        _copy_out(d, "stdout", sys.stdout.fileno())
        sys.stderr.flush()
        _copy_out(d, "stderr", sys.stderr.fileno())
        return int(parts[2])


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
    with _tty_lock(pod), connect(pod, name=TTY_SOCKET) as sock, _request_dir(pod, rid) as d:
        _write_request(d, "cmd.sh", tty_command(prefix, rid, cmd, os.environ.get("TERM")))
        log.debug(f"kvm: enter {rid} with a terminal: {list(cmd)!r}")
        answer = _request(pod, f"tty {rid}", 30.0)
        if answer != f"started {rid}":
            raise RktError(f"unexpected answer from the pod's VM agent: {answer!r}")
        try:
            pending = ttysession.wait_ready(sock, rid, lambda: _hypervisor_alive(pod))
        except RktError as e:
            try:
                guest_log = d.read_text("log", GUEST_LOG_MAX).strip()
            except OSError:
                guest_log = ""
            raise RktError(e.message, guest_log or e.hint) from e
        with ttysession.raw_terminal(sys.stdin.fileno()):
            return ttysession.relay(sock, sys.stdin.fileno(), sys.stdout.fileno(), pending)
