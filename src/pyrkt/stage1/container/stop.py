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


def _pid(pod: Path) -> int | None:
    try:
        return int(contract.pid_file(pod).read_text().strip())
    except (OSError, ValueError):
        return None


def stop(args: StopArgs, pod: Path | None = None) -> int:
    """SIGTERM to the pod init (which forwards it to the apps); --force: SIGKILL, which
    takes down the whole PID namespace."""
    pod = pod or Path.cwd()
    pid = _pid(pod)
    if pid is None:
        log.debug("no pid file: the pod is not running")
        return 0
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL if args.force else signal.SIGTERM)
    return 0


def gc(uuid: str, pod: Path | None = None) -> int:
    """Release what an exited pod still holds: its cgroups, its network."""
    pod = pod or Path.cwd()
    PodCgroups(uuid).destroy()
    from pyrkt.net.api import teardown_pod_network

    teardown_pod_network(pod)
    return 0
