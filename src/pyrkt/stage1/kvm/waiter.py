"""The lean waiter the kvm runner becomes once the hypervisor is started.

`rkt run` of a VM pod keeps one host process besides the hypervisor: the stage1 runner,
its parent, which must outlive it to collect the apps' exit codes and tear the pod down.
Planning the pod imports most of pyrkt (~25 MiB of Python heap for the whole life of the
pod), so the runner execs a waiter instead of waiting itself: same pid (the hypervisor
stays its child, the pod lock fd stays open).

The waiter is `rkt-wait` (rkt-wait.c, a static program of a few hundred KiB in the
stage1 image's /kvm/) when the stage1 carries it; it starts this file only when there is
Python work: `--stop SPEC SIGNUM` on the first SIGTERM/SIGHUP/SIGINT (graceful stop
through the agent, the apps getting SIGINT for a SIGINT, else SIGTERM; else kill the
hypervisor), and `--finish RC SPEC` by exec once the hypervisor exited
with RC (exit codes, network teardown, errors; its exit status is the pod's).

Without rkt-wait (an older stage1 image), this file is the waiter itself: `waiter.py
SPEC`, started as `python -I -S` with only `os`, `signal`, `sys` and `json` loaded while
the VM runs (~10 MiB).

SPEC (JSON): {"pid": hypervisor pid, "pod": folder, "apps": [names in pod order],
              "net": tear the pod network down after, "debug": bool,
              "cgroups": [the hypervisor's groups, leaf first: removed once it is gone
                          (rkt-wait gets them as RKT_WAIT_RMDIR)]}
The runner blocks SIGTERM/SIGHUP before the exec (the mask survives it), so a signal
sent in between waits for the handlers instead of killing the waiter.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys

TYPE_CHECKING = False  # read as typing.TYPE_CHECKING by mypy; no typing import at run time
if TYPE_CHECKING:
    from typing import Any


def _import_pyrkt() -> None:
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    if src not in sys.path:
        sys.path.insert(0, src)


def stop(spec: dict[str, Any], signum: int = signal.SIGTERM) -> None:
    """Stop the apps gracefully (as `rkt stop`; with SIGINT for a SIGINT: Ctrl-C); kill
    the hypervisor if that fails."""
    if spec["apps"]:
        _import_pyrkt()
        from pathlib import Path

        from pyrkt.stage1.kvm import agent

        sig = signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM
        if agent.stop_or_say(Path(spec["pod"]), 10.0, "stopping the VM", sig):
            return
    with contextlib.suppress(ProcessLookupError):
        os.kill(spec["pid"], signal.SIGTERM)


def finish(spec: dict[str, Any], rc: int) -> int:
    """The pod's exit code once the hypervisor exited with rc; the network torn down."""
    _import_pyrkt()
    from pathlib import Path

    from pyrkt import log
    from pyrkt.errors import RktError
    from pyrkt.stage1.kvm.finish import finish_pod

    log.set_prefix("stage1")
    log.set_debug(bool(spec.get("debug")))
    pod = Path(spec["pod"])
    try:
        try:
            return finish_pod(pod, list(spec["apps"]), rc)
        finally:
            if spec.get("net"):
                from pyrkt.net.api import teardown_pod_network

                teardown_pod_network(pod)
    except (RktError, OSError) as e:
        return log.failed(e)


def wait(spec: dict[str, Any]) -> int:
    """Wait for the hypervisor here (no rkt-wait), then finish."""
    pid: int = spec["pid"]
    asked: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        """First SIGTERM/SIGHUP/SIGINT: stop the apps gracefully; then: kill."""
        if not asked:
            asked.append(signum)
            stop(spec, signum)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

    handled = [signal.SIGTERM, signal.SIGHUP]
    if signal.getsignal(signal.SIGINT) != signal.SIG_IGN:  # the runner's choice
        handled.append(signal.SIGINT)
    for s in handled:
        signal.signal(s, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(handled))
    _, status = os.waitpid(pid, 0)  # retried on EINTR (PEP 475); handlers run meanwhile
    rc = os.waitstatus_to_exitcode(status)
    for d in spec.get("cgroups") or []:
        with contextlib.suppress(OSError):
            os.rmdir(d)
    for s in handled:
        signal.signal(s, signal.SIG_DFL)
    return finish(spec, rc)


def main(argv: list[str]) -> int:
    if len(argv) in (3, 4) and argv[1] == "--stop":
        stop(json.loads(argv[2]), *(int(a) for a in argv[3:]))
        return 0
    if len(argv) == 4 and argv[1] == "--finish":
        return finish(json.loads(argv[3]), int(argv[2]))
    return wait(json.loads(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
