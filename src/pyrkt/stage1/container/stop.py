"""The `stop` and `gc` entrypoints of the container flavor."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from pyrkt import log
from pyrkt.linux.cgroup import PodCgroups
from pyrkt.stage1 import contract
from pyrkt.stage1.container.args import StopArgs


def _pid(f: Path) -> int | None:
    try:
        return int(f.read_text().strip())
    except (OSError, ValueError):
        return None


def stop(args: StopArgs, pod: Path | None = None) -> int:
    """SIGTERM to the pod init (which forwards it to the apps); --force: SIGKILL to the
    pod init (which takes down the whole PID namespace) and to the stage1 process that
    `rkt run` became, as rkt's stop killed the process tree of its `ppid`."""
    pod = pod or Path.cwd()
    pid = _pid(contract.pid_file(pod))
    if pid is None:
        log.debug("no pid file: the pod is not running")
        return 0
    targets = [pid]
    if args.force:
        runner = contract.stage1_process(pod)
        targets += [runner] if runner is not None else []
    for p in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL if args.force else signal.SIGTERM)
    return 0


def gc(uuid: str, pod: Path | None = None) -> int:
    """Release what an exited pod still holds: its cgroups, its network."""
    pod = pod or Path.cwd()
    PodCgroups(uuid).destroy()
    from pyrkt.net.api import teardown_pod_network

    teardown_pod_network(pod)
    return 0
