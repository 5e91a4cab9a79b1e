"""The stage0 -> stage1 contract: what stage0 hands over and what a stage1 writes back.

A stage1 is an image (ACI) whose manifest annotations name its entrypoints. stage0
renders it into `POD/stage1/rootfs`, mounts each app's rootfs at
`POD/stage1/rootfs/opt/stage2/<app>/rootfs`, writes the pod manifest to `POD/pod`, then
execs the `run` entrypoint with cwd = POD and the arguments below. The stage1 writes its
pid to `POD/pid` (the process that represents the pod: pod init, or the hypervisor),
each app's exit code to `POD/stage1/rootfs/rkt/status/<app>` (decimal text), and exits
with the first failing app's code.

Entrypoints are executables inside the stage1 rootfs. Ours are tiny `sh` scripts that
exec `$PYRKT_PYTHON -m pyrkt.stage1.<flavor> <verb> "$@"`; stage0 sets PYRKT_PYTHON to
its own interpreter.
"""

from __future__ import annotations

from pathlib import Path

INTERFACE_VERSION = 5

# Annotation names on the stage1 image manifest.
ANN_RUN = "coreos.com/rkt/stage1/run"
ANN_ENTER = "coreos.com/rkt/stage1/enter"
ANN_GC = "coreos.com/rkt/stage1/gc"
ANN_STOP = "coreos.com/rkt/stage1/stop"
ANN_INTERFACE_VERSION = "coreos.com/rkt/stage1/interface-version"
# Our extension: which flavor and hypervisor an image is (for `rkt image list` and plans).
ANN_FLAVOR = "coreos.com/rkt/stage1/flavor"
ANN_HYPERVISOR = "coreos.com/rkt/stage1/hypervisor"

ENV_LOCK_FD = "RKT_LOCK_FD"
ENV_PYTHON = "PYRKT_PYTHON"


def pod_manifest(pod: Path) -> Path:
    return pod / "pod"


def pid_file(pod: Path) -> Path:
    return pod / "pid"


def ppid_file(pod: Path) -> Path:
    """The stage1's own process (the one `rkt run` became), as rkt's `ppid`: what
    `stop --force` kills with the pod, so that `rkt run` dies of SIGKILL as in rkt."""
    return pod / "ppid"


def stage1_rootfs(pod: Path) -> Path:
    return pod / "stage1" / "rootfs"


def stage1_manifest(pod: Path) -> Path:
    return pod / "stage1" / "manifest"


def app_dir(pod: Path, app: str) -> Path:
    return stage1_rootfs(pod) / "opt" / "stage2" / app


def app_rootfs(pod: Path, app: str) -> Path:
    return app_dir(pod, app) / "rootfs"


def status_dir(pod: Path) -> Path:
    return stage1_rootfs(pod) / "rkt" / "status"


def app_status(pod: Path, app: str) -> Path:
    return status_dir(pod) / app


def net_info(pod: Path) -> Path:
    return pod / "net-info.json"


def read_exit_codes(pod: Path) -> dict[str, int]:
    """Exit codes the stage1 wrote, by app name."""
    out: dict[str, int] = {}
    d = status_dir(pod)
    if not d.is_dir():
        return out
    for f in sorted(d.iterdir()):
        try:
            out[f.name] = int(f.read_text().strip())
        except (OSError, ValueError):
            continue
    return out
