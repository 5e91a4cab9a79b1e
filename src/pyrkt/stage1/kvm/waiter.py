"""The lean waiter the kvm runner becomes once the hypervisor is started.

`rkt run` of a VM pod keeps one host process besides the hypervisor: the stage1 runner,
its parent, which must outlive it to collect the apps' exit codes and tear the pod down.
Planning the pod imports most of pyrkt (~25 MiB of Python heap for the whole life of the
pod), so the runner execs this file instead of waiting itself: same pid (the hypervisor
stays its child, the pod lock fd stays open), started as `python -I -S waiter.py JSON`
with only `os`, `signal`, `sys` and `json` loaded while the VM runs (~9 MiB). pyrkt is
imported again only when needed: a stop request (the agent) and after the hypervisor
exited (exit codes, network teardown, errors), when memory no longer matters.

JSON: {"pid": hypervisor pid, "pod": folder, "apps": [names in pod order],
       "net": tear the pod network down after, "debug": bool}
The runner blocks SIGTERM/SIGHUP before the exec (the mask survives it), so a signal
sent in between waits for the handlers below instead of killing the waiter.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys


def _import_pyrkt() -> None:
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    if src not in sys.path:
        sys.path.insert(0, src)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    pid: int = spec["pid"]
    pod: str = spec["pod"]
    asked: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        """First SIGTERM/SIGHUP: stop the apps gracefully (as `rkt stop`); then: kill."""
        if not asked and spec["apps"]:
            asked.append(signum)
            _import_pyrkt()
            from pathlib import Path

            from pyrkt import log
            from pyrkt.errors import RktError
            from pyrkt.stage1.kvm import agent

            try:
                agent.stop(Path(pod), timeout=10.0)
                return
            except RktError as e:
                log.warn(f"graceful stop failed ({e}); stopping the VM")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGHUP})
    _, status = os.waitpid(pid, 0)  # retried on EINTR (PEP 475); handlers run meanwhile
    rc = os.waitstatus_to_exitcode(status)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)

    _import_pyrkt()
    from pathlib import Path

    from pyrkt import log
    from pyrkt.errors import RktError
    from pyrkt.stage1.kvm import runner

    log.set_prefix("stage1")
    log.set_debug(bool(spec.get("debug")))
    try:
        try:
            return runner.finish_pod(Path(pod), list(spec["apps"]), rc)
        finally:
            if spec.get("net"):
                from pyrkt.net.api import teardown_pod_network

                teardown_pod_network(Path(pod))
    except RktError as e:
        print(f"stage1: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        print(f"stage1: {e}", file=sys.stderr)
        return 254


if __name__ == "__main__":
    sys.exit(main(sys.argv))
