"""The fly flavor's `run`: rkt's fly, no isolation. One app, in a private mount
namespace where its rootfs gets the host's /dev, /proc and /sys (recursive binds), the
host's /etc/hosts and /etc/resolv.conf, and the pod's volumes; the app is chrooted with
the plan's user, groups, env and working directory, sharing everything else with the
host (network, PIDs, hostname, capabilities). Its exit code is recorded as rkt does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from pyrkt import log
from pyrkt.errors import RktError
from pyrkt.linux import mount, ns
from pyrkt.stage1.container import app as appexec
from pyrkt.stage1.container import rootfs
from pyrkt.stage1.container.args import RunArgs, plan_for
from pyrkt.stage1.container.init import FORWARDED, exit_code, write_app_info, write_status
from pyrkt.stage1.container.paths import secure_join
from pyrkt.stage1.container.run import write_pid
from pyrkt.stage1.plan import AppPlan, PodPlan

HOST_DIRS = ("/dev", "/proc", "/sys")
HOST_FILES = ("/etc/hosts", "/etc/resolv.conf")


def prepare(app: AppPlan) -> None:
    root = app.rootfs
    mount.bind(str(root), str(root), recursive=True)
    for d in HOST_DIRS:
        target = secure_join(root, d)
        target.mkdir(parents=True, exist_ok=True)
        mount.bind(d, str(target), recursive=True)
    for f in HOST_FILES:
        if not os.path.exists(f):
            continue
        target = secure_join(root, f)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(0o644)
        mount.bind(f, str(target), recursive=False)
    for m in sorted(app.mounts, key=lambda m: m.target.count("/")):
        rootfs.mount_volume(root, m)
    if app.readonly_rootfs:
        mount.remount_bind(str(root), read_only=True)


def execute(plan: PodPlan, pod: Path) -> int:
    """Run the pod's only app; its exit code."""
    pod = pod.resolve()
    if len(plan.apps) != 1:
        raise RktError(f"flavor fly only supports 1 application per pod, got {len(plan.apps)}")
    app = plan.apps[0]
    try:
        ns.unshare(ns.CLONE.NEWNS)
        mount.make_private("/", slave=True)
        prepare(app)
        write_app_info(pod, app)
    except OSError as e:
        raise RktError(f"stage1: {e}") from e
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        appexec.become_app(app, restrict_caps=False)
    write_pid(pod, child)
    log.debug(f"app {app.name} is pid {child}")

    def forward(sig: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, sig)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    _, status = os.waitpid(child, 0)
    code = exit_code(status)
    write_status(pod, app.name, code)
    return code


def main(args: RunArgs) -> int:
    pod = Path.cwd()
    plan = plan_for(args, pod)
    if plan.net not in ("host", "default"):
        log.debug(f"flavor fly shares the host's network: ignoring --net={plan.net}")
    return execute(plan, pod)
