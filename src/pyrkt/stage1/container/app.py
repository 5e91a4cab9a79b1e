"""Turning the current (forked) process into an app: cgroups, chroot, user, capabilities,
no_new_privs, environment, exec. Shared by the coreos and fly flavors and by `enter`.

Everything here runs in a child after fork; failures are written to stderr and the
child exits (127/126 when the command cannot be executed, 254 for other set-up errors).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence

from pyrkt.linux import caps, prctl
from pyrkt.stage1.container.diagnose import diagnose as why  # imported before the chroot
from pyrkt.stage1.plan import AppPlan

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SETUP_FAILED = 254
EXIT_EXEC = 203  # an app that could not be executed, as rkt (systemd's EXIT_EXEC) said


def child_fail(prefix: str, err: BaseException, code: int = SETUP_FAILED) -> NoReturn:
    try:
        os.write(2, f"stage1: {prefix}: {err}\n".encode())
    finally:
        os._exit(code)


def exec_argv(argv: Sequence[str], env: Mapping[str, str], prefix: str,
              *, diagnose: bool = False) -> NoReturn:  # fmt: skip
    """execvpe with the app's PATH; never returns. `diagnose`: an app's start (rkt's
    stage1): when the exec fails, rkt's one-line diagnostic (the file that could not be
    opened: the program or its interpreter) and systemd's exit status 203 (EXIT_EXEC)."""
    env = dict(env)
    env.setdefault("PATH", DEFAULT_PATH)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], list(argv), env)
    except OSError as e:
        line = ""
        if diagnose and argv[0].startswith("/"):
            line = why(argv[0])
        if line:
            try:
                os.write(2, f"{line}\n".encode())
            finally:
                os._exit(EXIT_EXEC)
        if isinstance(e, FileNotFoundError):
            child_fail(prefix, OSError(f"{argv[0]}: no such file or directory"),
                       EXIT_EXEC if diagnose else 127)  # fmt: skip
        if isinstance(e, PermissionError):
            child_fail(prefix, OSError(f"{argv[0]}: permission denied"),
                       EXIT_EXEC if diagnose else 126)  # fmt: skip
        child_fail(prefix, e, EXIT_EXEC if diagnose else 126)


def drop_privileges(app: AppPlan, *, restrict_caps: bool, seccomp: bytes | None = None) -> None:
    """Seccomp filter, bounding set, user and groups, retained caps, no_new_privs (in
    that order: loading a filter without no_new_privs and the bounding set both need
    capabilities that setuid may take away)."""
    if seccomp is not None:
        from pyrkt.linux import seccomp as seccomp_mod

        seccomp_mod.load(seccomp)
    keep = caps.mask_of(app.capabilities)
    if restrict_caps:
        caps.drop_bounding(keep)
    os.setgroups(list(app.supplementary_gids))
    os.setgid(app.gid)
    if app.uid != 0:
        prctl.set_keepcaps(True)
    os.setuid(app.uid)
    if restrict_caps:
        caps.apply_retained(keep, ambient=app.uid != 0)
    if app.no_new_privs:
        prctl.set_no_new_privs()


def become_app(
    app: AppPlan,
    *,
    before_chroot: Callable[[], None] | None = None,
    restrict_caps: bool = True,
    seccomp: bytes | None = None,
    own_seccomp: bytes | None = None,
) -> NoReturn:
    """chroot into app.rootfs, drop privileges, exec app.argv. seccomp: a BPF program
    (see pyrkt.linux.seccomp) to install, or None; own_seccomp: the app's own filter,
    installed last, just before the exec, so that it cannot break the set-up."""
    prefix = f"app {app.name}"
    try:
        if before_chroot is not None:
            before_chroot()
        os.chroot(app.rootfs)
        try:
            os.chdir(app.working_dir or "/")
        except OSError as e:
            raise OSError(e.errno, f"working directory {app.working_dir}: {e.strerror}") from e
        drop_privileges(app, restrict_caps=restrict_caps, seccomp=seccomp)
        os.closerange(3, 1 << 20)
        if own_seccomp is not None:
            from pyrkt.linux import seccomp as seccomp_mod

            seccomp_mod.load_late(own_seccomp)
    except BaseException as e:  # in a forked child: never unwind into the parent's code
        child_fail(prefix, e)
    if not app.argv:
        child_fail(prefix, OSError("no command to execute"))
    exec_argv(app.argv, dict(app.env), prefix, diagnose=True)
