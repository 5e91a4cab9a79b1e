"""The `enter` entrypoint: run a command inside a running app of the pod.

Joins the namespaces of the pod init (pid from --pid or POD/pid), the app's cgroups,
chroots into the app's rootfs and execs CMD with the app's environment. The terminal,
if any, is the caller's: stdin/stdout/stderr are inherited.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from pyrkt.errors import NotFound, RktError
from pyrkt.linux import ns
from pyrkt.linux.cgroup import PodCgroups
from pyrkt.stage1 import contract
from pyrkt.stage1.container import app as appexec
from pyrkt.stage1.container.args import EnterArgs
from pyrkt.stage1.container.init import app_info_file, exit_code

DEFAULT_CMD = ("/bin/sh",)


def _pod_dir(pid: int) -> Path:
    cwd = Path.cwd()
    if contract.pid_file(cwd).exists():
        return cwd
    return Path(os.readlink(f"/proc/{pid}/cwd"))


def _pod_pid(pod: Path) -> int:
    try:
        return int(contract.pid_file(pod).read_text().strip())
    except (OSError, ValueError) as e:
        raise RktError(f"cannot read the pod's pid: {e}", "is the pod running?") from e


def _only_app(pod: Path) -> str:
    apps = sorted(p.name for p in (contract.stage1_rootfs(pod) / "opt" / "stage2").iterdir()
                  if app_info_file(pod, p.name).exists())
    if len(apps) != 1:
        raise RktError("the pod has several apps: name one with --app", f"apps: {apps}")
    return apps[0]


def join_namespaces(pid: int) -> None:
    """setns into every namespace of pid that differs from ours (mnt last)."""
    fds: list[tuple[int, ns.CLONE]] = []
    try:
        for name, kind in ns.NS_FILES:
            path = f"/proc/{pid}/ns/{name}"
            try:
                if os.stat(path).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                    continue
                fds.append((os.open(path, os.O_RDONLY | os.O_CLOEXEC), kind))
            except FileNotFoundError:
                continue
        for fd, kind in fds:
            ns.setns(fd, kind)
    finally:
        for fd, _ in fds:
            os.close(fd)


def main(args: EnterArgs) -> int:
    pod = Path.cwd() if args.pid is None else _pod_dir(args.pid)
    pid = args.pid if args.pid is not None else _pod_pid(pod)
    if not Path(f"/proc/{pid}").exists():
        raise RktError(f"pod process {pid} is not running")
    uuid = os.path.basename(pod)
    # Join first: the stage1 rootfs (where the app's info is) may be a mount that only
    # exists in the pod's mount namespace (stage0's overlay).
    try:
        join_namespaces(pid)
    except OSError as e:
        raise RktError(f"cannot enter the pod: {e}") from e
    app = args.appname or _only_app(pod)
    info_file = app_info_file(pod, app)
    try:
        info = json.loads(info_file.read_text())
    except OSError as e:
        raise NotFound(f"no app {app!r} running in the pod") from e
    rootfs = info.get("rootfs") or str(contract.app_rootfs(pod, app))
    env: dict[str, str] = info.get("env", {})
    cmd = args.cmd or DEFAULT_CMD
    child = os.fork()
    if child == 0:
        try:
            with contextlib.suppress(OSError):
                PodCgroups(uuid).join(app)
            os.chroot(rootfs)
            os.chdir(info.get("working_dir") or "/")
            os.closerange(3, 1 << 20)
        except BaseException as e:
            appexec.child_fail(f"enter {app}", e)
        appexec.exec_argv(cmd, env, f"enter {app}")
    _, status = os.waitpid(child, 0)
    return exit_code(status)
