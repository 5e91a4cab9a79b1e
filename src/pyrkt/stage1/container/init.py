"""The pod init: PID 1 of the pod's PID namespace, a reaper that starts every app.

It prepares each app's rootfs (mounts are made here so that /proc is the pod's), forks
one child per app, forwards stop signals to everything in the pod, reaps every process
(orphans included), writes each app's exit code as it exits, and exits with the first
failing app's code (0 if all succeeded). As rkt's units (OnFailure=halt.target): when an
app exits non-zero, the pod shuts down (the other apps get SIGTERM, then SIGKILL) and the
pod exits with that app's code. Event handlers: pre-start before the app, post-stop
after it, as root in its rootfs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from types import FrameType

from pyrkt.linux import prctl
from pyrkt.linux.cgroup import PodCgroups
from pyrkt.record import record, replace
from pyrkt.stage1 import contract
from pyrkt.stage1.container import app as appexec
from pyrkt.stage1.container import rootfs
from pyrkt.stage1.plan import AppPlan, PodPlan

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

SHUTDOWN_GRACE_S = 10  # after an app failed: SIGTERM to the others, SIGKILL after this
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


@record
class InitConfig:
    """What the pod init needs, computed before the fork."""

    plan: PodPlan
    pod: Path
    cgroups: PodCgroups
    etc_files: dict[str, Path]
    console_tty: str | None = None
    protect_paths: bool = True
    restrict_caps: bool = True
    seccomp: bytes | None = None  # the filter every app gets (pyrkt.linux.seccomp)
    app_seccomp: tuple[tuple[str, bytes | None], ...] = ()  # (app, own filter) instead
    inaccessible: tuple[Path, Path] | None = None  # what hides kernel paths (rootfs)
    etc_fallback: frozenset[str] = frozenset()  # etc_files bound only where the image has none


def exit_code(status: int) -> int:
    """A wait status as rkt reports it: the exit code, or 128 + the killing signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def write_status(pod: Path, app: str, code: int) -> None:
    path = contract.app_status(pod, app)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{app}.tmp")
    tmp.write_text(f"{code}")
    tmp.replace(path)


def app_info_file(pod: Path, app: str) -> Path:
    """What `enter` needs to know about an app (env, working dir), written at start."""
    return contract.app_dir(pod, app) / "pyrkt-app.json"


def write_app_info(pod: Path, app: AppPlan) -> None:
    f = app_info_file(pod, app.name)
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"env": dict(app.env), "working_dir": app.working_dir,
                             "rootfs": str(app.rootfs)}))


def _run_handler(cfg: InitConfig, app: AppPlan, argv: tuple[str, ...]) -> int:
    """Run one of the app's event handlers as rkt did (systemd's ExecStartPre/
    ExecStopPost with PermissionsStartOnly): as root, in the app's rootfs, cgroup,
    environment and working directory, its output on the pod's; its exit code."""
    pid = os.fork()
    if pid == 0:
        appexec.become_app(
            replace(app, argv=argv, uid=0, gid=0, supplementary_gids=()),
            before_chroot=lambda: cfg.cgroups.join(app.name),
            restrict_caps=cfg.restrict_caps,
            seccomp=None if app.name in dict(cfg.app_seccomp) else cfg.seccomp,
            own_seccomp=dict(cfg.app_seccomp).get(app.name),
        )
    _, status = os.waitpid(pid, 0)
    return exit_code(status)


def _fork_child() -> int:
    """fork(); in the child, the signals the init handles back to their defaults."""
    pid = os.fork()
    if pid == 0:
        for sig in (*FORWARDED, signal.SIGALRM):
            signal.signal(sig, signal.SIG_DFL)
    return pid


def _start_post_stop(cfg: InitConfig, app: AppPlan) -> int:
    """A process that runs the app's post-stop handlers one after the other."""
    pid = _fork_child()
    if pid:
        return pid
    try:
        for argv in app.post_stop:
            _run_handler(cfg, app, argv)
    except BaseException as e:
        appexec.child_fail(f"app {app.name}: post-stop", e)
    os._exit(0)


def _start_app(cfg: InitConfig, app: AppPlan) -> int:
    pid = _fork_child()
    if pid:
        return pid
    try:
        if not cfg.plan.interactive:
            os.setsid()
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        if app.oom_score_adj is not None:  # the host's /proc: this process is in it
            try:
                with open("/proc/self/oom_score_adj", "w") as f:
                    f.write(str(app.oom_score_adj))
            except OSError as e:
                raise OSError(e.errno, f"cannot set oom_score_adj to {app.oom_score_adj}: "
                              f"{e.strerror} (lowering it needs CAP_SYS_RESOURCE)") from e
        for argv in app.pre_start:  # as rkt: a failing pre-start fails the app
            code = _run_handler(cfg, app, argv)
            if code:
                os._exit(code)
    except OSError as e:
        appexec.child_fail(f"app {app.name}", e)
    own = dict(cfg.app_seccomp)
    appexec.become_app(
        app,
        before_chroot=lambda: cfg.cgroups.join(app.name),
        restrict_caps=cfg.restrict_caps,
        seccomp=None if app.name in own else cfg.seccomp,
        own_seccomp=own.get(app.name),
    )


def run_init(cfg: InitConfig, parent: int) -> NoReturn:
    """Body of the forked pod init; never returns."""
    stopping: list[int] = []

    def forward(sig: int, _frame: FrameType | None) -> None:
        if sig in STOP_SIGNALS:
            stopping.append(sig)
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, sig)  # every process in the pod but init itself

    # Handlers first: a PID namespace's init gets no signal it has no handler for, so a
    # `stop` arriving while the apps are being prepared would otherwise be lost.
    ignored = (signal.SIGINT, signal.SIGQUIT) if cfg.plan.interactive else ()
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_IGN if sig in ignored else forward)
    try:
        prctl.set_pdeathsig(signal.SIGKILL)
        # The parent is outside our PID namespace (getppid() is 0): look at the host's
        # /proc, still mounted here, in case it died before the death signal was set.
        if not os.path.exists(f"/proc/{parent}"):
            os._exit(1)
        prctl.set_child_subreaper()
        if not cfg.plan.interactive:
            os.setsid()
        for app in cfg.plan.apps:
            rootfs.prepare(
                app,
                cfg.etc_files,
                cfg.cgroups.views(app.name),
                console_tty=cfg.console_tty,
                protect_paths=cfg.protect_paths,
                inaccessible=cfg.inaccessible,
                etc_fallback=cfg.etc_fallback,
            )
            write_app_info(cfg.pod, app)
    except BaseException as e:
        appexec.child_fail("pod init", e)

    names: dict[int, str] = {}
    codes: dict[str, int] = {}
    helpers: set[int] = set()  # post-stop handlers running
    failures: list[int] = []  # apps that failed by themselves, in the order they did

    def shutdown() -> None:
        """rkt's OnFailure=halt.target: one app failed, the pod stops: SIGTERM to every
        process, SIGKILL to what is left after SHUTDOWN_GRACE_S."""
        stopping.append(signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGTERM)
        signal.alarm(SHUTDOWN_GRACE_S)

    def kill_all(_sig: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)

    signal.signal(signal.SIGALRM, kill_all)
    by_name = {a.name: a for a in cfg.plan.apps}
    try:
        for app in cfg.plan.apps:
            if stopping:  # stopped before every app started: start no more
                codes[app.name] = 128 + stopping[0]
                write_status(cfg.pod, app.name, codes[app.name])
                continue
            names[_start_app(cfg, app)] = app.name
    except BaseException as e:
        os.write(2, f"stage1: pod init: {e}\n".encode())
        codes["<init>"] = appexec.SETUP_FAILED
    while helpers or any(n not in codes for n in names.values()):
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid in helpers:
            helpers.discard(pid)
            continue
        name = names.get(pid)
        if name is None:
            continue  # an orphan the init reaped
        codes[name] = exit_code(status)
        write_status(cfg.pod, name, codes[name])
        if codes[name] and not stopping:
            failures.append(codes[name])
            shutdown()
        if by_name[name].post_stop:
            helpers.add(_start_post_stop(cfg, by_name[name]))
    failed = failures or [codes[a.name] for a in cfg.plan.apps if codes.get(a.name, 0) != 0]
    os._exit(failed[0] if failed else codes.get("<init>", 0))
