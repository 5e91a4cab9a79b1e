"""Hand a prepared pod to its stage1: move it to `run` (locked), mount, exec `run`.

This process *becomes* the stage1 (as rkt's stage0 did with exec): the pod's lock fd is
inherited (RKT_LOCK_FD) so the pod reads as running exactly as long as the stage1 (or
anything it left holding the fd) lives, and `rkt run` exits with the stage1's code. The
mounts are made in a private mount namespace unshared just before, so they vanish with
the pod even when everything is SIGKILLed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pyrkt import log
from pyrkt.errors import RktError
from pyrkt.options import GlobalOptions, Insecure
from pyrkt.pod import pods, runopts
from pyrkt.stage0 import mounts
from pyrkt.stage1 import contract

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn


def stage1_annotation(pod_dir: Path, name: str) -> str | None:
    try:
        m = json.loads(contract.stage1_manifest(pod_dir).read_text())
    except (OSError, ValueError):
        return None
    for a in m.get("annotations") or []:
        if isinstance(a, dict) and a.get("name") == name:
            return str(a.get("value", ""))
    return None


def entrypoint(pod_dir: Path, ann: str, *, mounted: bool = False) -> Path:
    """The host path of one of the stage1's entrypoints.

    Outside the pod's mount namespace the stage1 rootfs is not mounted, and once the pod
    ran it is the pod's to write (with --no-overlay, its copy; a VM pod's guest writes
    it): the entrypoint is taken from the rendered stage1 tree instead, which no pod
    writes. `mounted`: `run`, before the pod started.
    """
    rel = stage1_annotation(pod_dir, ann)
    if not rel:
        raise RktError(f"the stage1 image of this pod has no {ann} entrypoint")
    root = contract.stage1_rootfs(pod_dir) if mounted else contract.stage1_image_rootfs(pod_dir)
    return root / rel.lstrip("/")


def stage1_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env[contract.ENV_PYTHON] = sys.executable
    if extra:
        env.update(extra)
    return env


def app_names(pod_dir: Path) -> list[str]:
    """The pod's app names (read without parsing the whole manifest: this is hot)."""
    try:
        data = json.loads(contract.pod_manifest(pod_dir).read_text())
        return [str(a["name"]) for a in data["apps"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RktError(f"pod {pod_dir.name}: unreadable pod manifest") from e


def run_args(g: GlobalOptions, pod: pods.Pod, ro: runopts.RunOptions) -> list[str]:
    args: list[str] = []
    if g.debug:
        args.append("--debug")
    args.append(f"--net={ro.net}")
    if ro.interactive:
        args.append("--interactive")
    if ro.hostname:
        args.append(f"--hostname={ro.hostname}")
    args.append(f"--local-config={g.local_config}")
    if g.allows(Insecure.CAPABILITIES):
        args.append("--disable-capabilities-restriction")
    if g.allows(Insecure.PATHS):
        args.append("--disable-paths")
    if g.allows(Insecure.SECCOMP):
        args.append("--disable-seccomp")
    args += [f"--{k}={v}" for k, v in ro.extra]
    args.append(pod.uuid)
    return args


# Our own stage1 entrypoints are one line: `exec "${PYRKT_PYTHON:-python3}" -m MODULE run "$@"`.
_OWN_MODULES = ("pyrkt.stage1.container", "pyrkt.stage1.fly", "pyrkt.stage1.kvm")


def _own_entry_line(module: str, verb: str) -> str:
    return f'exec "${{PYRKT_PYTHON:-python3}}" -m {module} {verb} "$@"'


ENV_FORCE_EXEC = "PYRKT_STAGE1_EXEC"


def inprocess_module(entry: Path, verb: str = "run") -> str | None:
    """The stage1 module an entrypoint would start, if it is one of ours, else None.

    Such an entrypoint would start this very interpreter (PYRKT_PYTHON = sys.executable)
    on this very package: running its module here, in the process that already holds the
    lock and the mount namespace, is the same contract without a second interpreter
    start. PYRKT_STAGE1_EXEC=1 forces a real exec.
    """
    if os.environ.get(ENV_FORCE_EXEC, "") not in ("", "0"):
        return None
    try:
        if entry.stat().st_size > 4096:
            return None
        lines = [ln.strip() for ln in entry.read_text().splitlines()]
    except (OSError, UnicodeDecodeError):
        return None
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    if len(body) != 1:
        return None
    return next((m for m in _OWN_MODULES if body[0] == _own_entry_line(m, verb)), None)


def run_inprocess(module: str, argv: list[str], env: dict[str, str]) -> NoReturn:
    """Do what `exec python -m MODULE run ARGS` would: call `MODULE.__main__.main`.

    Each of our stage1 `__main__` modules is `main(argv) -> int` plus a guard that exits
    with its code (no runpy: it would import `importlib.util` and friends for nothing).
    """
    import gc
    import importlib

    os.environ.clear()
    os.environ.update(env)
    sys.argv = [module, "run", *argv[1:]]
    log.set_prefix("stage1")
    try:
        main = importlib.import_module(f"{module}.__main__").main
        # `rkt` starts with the cyclic GC off; the stage1 may live as long as the pod.
        # What exists now is kept for good (freeze), so the GC only scans newer objects.
        gc.freeze()
        gc.enable()
        code = main(sys.argv[1:])
        code = code if isinstance(code, int) else 254
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 254)
    except BaseException as e:  # the stage1 failed outside its own error handling
        print(f"stage1: {e}", file=sys.stderr)
        code = 254
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def exec_stage1(g: GlobalOptions, pod: pods.Pod, ro: runopts.RunOptions) -> NoReturn:
    """Run a prepared pod this process holds locked; never returns."""
    if pod.folder is not pods.Folder.PREPARED:
        raise RktError(f"pod {pod.uuid} is not prepared (state: {pod.state()})")
    if not pod.locked:
        pod.lock()
    d = pod.path
    runopts.write(d, ro)
    names = app_names(d)
    pod.move(pods.Folder.RUN)
    d = pod.path
    try:
        from pyrkt.linux import mountns

        mountns.private_mount_namespace()
        mounts.mount_pod(d, names)
        entry = entrypoint(d, contract.ANN_RUN, mounted=True)
        fd = pod.lock_fd_for_child()
        argv = [str(entry), *run_args(g, pod, ro)]
        env = stage1_env({contract.ENV_LOCK_FD: str(fd)})
        log.debug("+ " + " ".join(argv))
        os.chdir(d)
        sys.stdout.flush()
        sys.stderr.flush()
        module = inprocess_module(entry)
        if module is not None:
            run_inprocess(module, argv, env)
        os.execve(entry, argv, env)
    except OSError as e:
        # the pod never ran: leave it as exited (the lock goes with this process)
        raise RktError(f"cannot execute the stage1 of pod {pod.uuid}: {e}") from e
