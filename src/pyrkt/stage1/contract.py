"""The stage0 -> stage1 contract: what stage0 hands over and what a stage1 writes back.

A stage1 is an image (ACI) whose manifest annotations name its entrypoints. stage0
renders it into `POD/stage1/rootfs`, mounts each app's rootfs at
`POD/stage1/rootfs/opt/stage2/<app>/rootfs`, writes the pod manifest to `POD/pod`, then
execs the `run` entrypoint with cwd = POD and the arguments below. The stage1 writes its
pid to `POD/pid` (the process that represents the pod: pod init, or the hypervisor),
each app's exit code to `POD/stage1/rootfs/rkt/status/<app>` (decimal text), and exits
with the first failing app's code.

Everything under `POD/stage1/rootfs` may have been written by the pod (a VM pod's guest
writes that share), so what a stage1 writes back is read through `pyrkt.linux.beneath`:
no symlink followed, regular files only, a few bytes at most (`read_exit_codes`).

Entrypoints are executables inside the stage1 rootfs. Ours are tiny `sh` scripts that
exec `$PYRKT_PYTHON -m pyrkt.stage1.<flavor> <verb> "$@"`; stage0 sets PYRKT_PYTHON to
its own interpreter.
"""

from __future__ import annotations

from pathlib import Path

from pyrkt.record import record

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


def stage1_process(pod: Path) -> int | None:
    """The pid in ppid_file if that process is still the pod's stage1 (its working
    folder is the pod folder), not a pid the kernel gave to someone else since."""
    import os

    try:
        pid = int(ppid_file(pod).read_text().strip())
        return pid if os.readlink(f"/proc/{pid}/cwd") == str(pod.resolve()) else None
    except (OSError, ValueError):
        return None


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


# An exit status file holds "N" or "N\n" (0-255): anything longer is not one.
EXIT_CODE_MAX_BYTES = 16
STATUS_REL = "rkt/status"


def stage1_tree_record(pod: Path) -> Path:
    """Where stage0 records the path of the stage1 image's rendered tree."""
    return pod / "stage1-tree"


def stage1_image_rootfs(pod: Path) -> Path:
    """The stage1 image's own rootfs, which no pod writes: the rendered tree stage0
    recorded (the overlay's lower; kept while the pod exists), else POD/stage1/rootfs (a
    pod folder made without stage0). Run host programs (kernel, initrd, rkt-wait,
    entrypoints after the pod started) from here, never from the pod's writable copy."""
    try:
        tree = stage1_tree_record(pod).read_text().strip()
    except FileNotFoundError:
        return stage1_rootfs(pod)
    return Path(tree) / "rootfs"


@record
class ExitStatus:
    code: int
    mtime: float  # when the stage1 wrote it


def read_exit_statuses(
    root: Path, apps: list[str]
) -> tuple[dict[str, ExitStatus], dict[str, str]]:
    """The exit statuses found under root/rkt/status (root: a stage1 rootfs, or its
    overlay's upper folder) for these apps, and why each refused file was refused (a
    symlink, a FIFO, too large, not a number: the pod wrote it, it is hostile input). A
    missing file or folder is neither."""
    from pyrkt.linux import beneath

    out: dict[str, ExitStatus] = {}
    refused: dict[str, str] = {}
    try:
        r = beneath.Root(root)
    except OSError:
        return out, refused
    with r:
        for app in apps:
            rel = f"{STATUS_REL}/{app}"
            try:
                raw, st = r.read_stat(rel, EXIT_CODE_MAX_BYTES)
                text = raw.decode("ascii").strip()
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as e:
                refused[app] = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                continue
            if not text.isdigit() or int(text) > 255:
                refused[app] = f"{rel}: not an exit code"
                continue
            out[app] = ExitStatus(int(text), st.st_mtime)
    return out, refused


FAILURE_MAX_BYTES = 4096


def failure_file(pod: Path) -> Path:
    """One line the stage1 (on the host, never the pod) writes when the pod ended without
    some app's exit code (its VM killed by a signal...): what `rkt status` reports as
    `failure=` for those apps."""
    return pod / "stage1-failure"


def write_failure(pod: Path, message: str) -> None:
    tmp = failure_file(pod).with_name(".stage1-failure.tmp")
    tmp.write_text(" ".join(message.split())[:FAILURE_MAX_BYTES - 1] + "\n")
    tmp.replace(failure_file(pod))


def read_failure(pod: Path) -> str | None:
    from pyrkt.linux import beneath

    try:
        text = beneath.read_file(pod, failure_file(pod).name, FAILURE_MAX_BYTES)
    except OSError:
        return None
    return text.decode(errors="replace").strip() or None


def read_exit_codes(pod: Path, apps: list[str]) -> dict[str, int]:
    """Exit codes the stage1 wrote, by app name (in the order of apps)."""
    statuses, _ = read_exit_statuses(stage1_rootfs(pod), apps)
    return {a: s.code for a, s in statuses.items()}
