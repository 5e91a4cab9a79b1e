"""`exec`: a process in the running container's VM, through the guest agent.

The process is planned like the container's own (`plan.app_plan`: user, env, cwd,
capabilities, rlimits) and run by the guest's rkt-exec in the container's rootfs.
The host side is a process of ours whose exit status is the guest process's (128+N
for signal N): with `--detach` a child (its pid in `--pid-file`; the caller reaps it),
else `exec` itself.

- Without a terminal: stdin is read up front (until EOF; nothing if nothing comes
  within STDIN_GRACE_S) and handed over as a file;
  the guest runs the command in the background (agent `exec ID`), writing its stdout,
  stderr and exit code into the control share, which the host copies to its own
  stdout and stderr as they grow. SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2
  to the host process are sent on to the guest process.
- With a terminal (`process.terminal`, `--console-socket`): the pty slave is the host
  process's terminal and the session is relayed as `rkt enter` does with a terminal
  (agent `tty ID`, the rkt.tty port, window size changes included).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from pathlib import Path

from pyrkt.errors import RktError
from pyrkt.linux import beneath
from pyrkt.oci.plan import app_plan
from pyrkt.oci.runlog import RuntimeLog
from pyrkt.oci.spec import Process
from pyrkt.oci.state import APP, Status, Store, write_pid_file
from pyrkt.record import record
from pyrkt.stage1 import contract

POLL_S = 0.05
STDIN_GRACE_S = 0.2
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)
CHUNK = 1 << 16


@record
class ExecArgs:
    cid: str
    process: Process
    detach: bool = False
    pid_file: Path | None = None
    console_socket: str | None = None


def exec_in(store: Store, a: ExecArgs, rlog: RuntimeLog) -> int:
    """Run a.process in container a.cid; its exit code, or 0 once started (--detach)."""
    st = store.load(a.cid)
    status = store.status(st)
    if status is not Status.RUNNING:
        raise RktError(f"cannot exec in a {status} container")
    if st.sandbox:
        raise RktError("cannot exec in an infra (sandbox) container: it runs no VM")
    if a.process.terminal and not a.console_socket:
        raise RktError("process.terminal is set but no --console-socket was given")
    pod = store.pod(a.cid)
    from pyrkt.stage1.kvm.guest import script

    app = app_plan(a.process, APP, contract.app_rootfs(pod, APP))
    prefix = script.exec_line(app, argv=())
    slave = None
    if a.process.terminal and a.console_socket:
        from pyrkt.oci import console

        slave = console.send_master(a.console_socket)
    if not a.detach:
        if slave is not None:
            from pyrkt.oci import console

            console.take_terminal(slave)
        return _run(pod, prefix, a.process, rlog)
    pid = os.fork()
    if pid == 0:
        code = 255
        try:
            if slave is not None:
                from pyrkt.oci import console

                console.take_terminal(slave)
            else:
                os.setsid()
            code = _run(pod, prefix, a.process, rlog)
        except BaseException as e:
            rlog.child_failed(f"exec in {a.cid}: {e}")
        finally:
            os._exit(code)
    if slave is not None:
        os.close(slave)
    if a.pid_file is not None:
        write_pid_file(a.pid_file, pid)
    return 0


def _run(pod: Path, prefix: str, p: Process, rlog: RuntimeLog) -> int:
    from pyrkt.stage1.kvm import agent

    agent.wait_started(pod)
    if p.terminal:
        return agent.enter_tty(pod, prefix, p.args)
    return _run_files(pod, prefix, p.args)


def _read_stdin(grace: float = STDIN_GRACE_S) -> bytes:
    """What the caller feeds on stdin, up to its end: unless nothing at all comes within
    grace seconds (a pipe the caller keeps open and never writes: containerd's shim
    does so for every exec), then nothing."""
    import select

    chunks = []
    with contextlib.suppress(OSError, ValueError):
        ready, _, _ = select.select([0], [], [], grace)
        if not ready:
            return b""
        while chunk := os.read(0, CHUNK):
            chunks.append(chunk)
    return b"".join(chunks)


def _run_files(pod: Path, prefix: str, args: tuple[str, ...]) -> int:
    from pyrkt.stage1.kvm import agent
    from pyrkt.stage1.kvm.guest import script

    rid = secrets.token_hex(8)
    with agent.request_dir(pod, rid) as d:  # under folder fds, never through a symlink
        guest = f"{script.GUEST_CTL}/enter/{rid}"
        cmd = " ".join(script.q(x) for x in args)
        d.write("cmd.sh", f"echo $$ >{guest}/pid\nexec {prefix} {cmd}\n", replace=False)
        d.write("stdin", _read_stdin(), replace=False)
        agent.start_exec(pod, rid)
        pending: list[int] = []

        def forward(signum: int, _frame: object) -> None:
            pending.append(signum)

        old = {s: signal.signal(s, forward) for s in FORWARDED}
        try:
            return _follow(pod, d, pending)
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _small(d: beneath.Root, name: str) -> bytes | None:
    """A small file the guest writes (rc, pid): None while it is not there (or is not a
    regular file of a few bytes)."""
    try:
        return d.read(name, 16)
    except OSError:
        return None


def _follow(pod: Path, d: beneath.Root, pending: list[int]) -> int:
    """Copy the guest command's output as it grows; its exit code once it wrote one."""
    from pyrkt.stage1.kvm.lifecycle import hypervisor_pid

    outs: dict[str, int | None] = {"stdout": None, "stderr": None}
    try:
        while True:
            rc = _small(d, "rc")
            for name, target in (("stdout", 1), ("stderr", 2)):
                if outs[name] is None:
                    with contextlib.suppress(OSError):
                        outs[name] = d.open_regular(name)
                fd = outs[name]
                if fd is not None:
                    _copy(fd, target)
            if rc is not None and rc.endswith(b"\n"):
                try:
                    return int(rc.strip())
                except ValueError as e:
                    raise RktError(f"the guest wrote an exit code that is not one: {rc!r}") from e
            while pending:
                _signal_guest(pod, d, pending.pop(0))
            if hypervisor_pid(pod) is None:
                raise RktError("the container's VM stopped during exec")
            time.sleep(POLL_S)
    finally:
        for fd in outs.values():
            if fd is not None:
                os.close(fd)


def _copy(src: int, dst: int) -> None:
    while data := os.read(src, CHUNK):
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(dst, view):]
            except BrokenPipeError:
                return


def _signal_guest(pod: Path, d: beneath.Root, sig: int) -> None:
    from pyrkt.stage1.kvm import agent

    raw = _small(d, "pid") or b""
    pid = raw.strip()
    if pid.isdigit():
        with contextlib.suppress(RktError):
            agent.signal_apps(pod, sig, pid.decode())
