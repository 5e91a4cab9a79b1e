"""Seccomp filters and the oom-score-adj isolator without a pod: the `--seccomp` and
`--oom-score-adj` parsers, manifest isolators, and filters loaded in a forked child
(no_new_privs makes that possible without root)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pyrkt.appc import pod as appc
from pyrkt.cli.runflags import parse_run_args
from pyrkt.errors import RktError, UsageError
from pyrkt.linux import prctl, seccomp
from pyrkt.linux.syscalls_x86_64 import SYSCALLS_X86_64

REMOVE, RETAIN = appc.SeccompMode.REMOVE, appc.SeccompMode.RETAIN


def in_child(program: bytes | None, action: Callable[[], int]) -> int:
    """Fork; the child loads program (if any) and exits with action()'s value."""
    pid = os.fork()
    if pid == 0:
        try:
            prctl.set_no_new_privs()
            if program is not None:
                seccomp.load(program)
            code = action()
        except BaseException:
            code = 99
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def mkdir_errno(path: Path) -> Callable[[], int]:
    def act() -> int:
        try:
            os.mkdir(path)
        except OSError as e:
            return e.errno or 98
        return 0

    return act


def test_remove_set_denies_only_its_calls(tmp_path: Path) -> None:
    prog = seccomp.filter_program(appc.SeccompFilter(REMOVE, ("mkdir", "mkdirat"), "EACCES"))
    assert in_child(prog, mkdir_errno(tmp_path / "a")) == errno.EACCES
    assert not (tmp_path / "a").exists()
    assert in_child(prog, lambda: len(os.listdir(tmp_path))) == 0  # the rest works
    assert in_child(None, mkdir_errno(tmp_path / "b")) == 0


def test_remove_set_without_errno_kills_with_sigsys(tmp_path: Path) -> None:
    prog = seccomp.filter_program(appc.SeccompFilter(REMOVE, ("mkdir", "mkdirat")))
    assert in_child(prog, mkdir_errno(tmp_path / "a")) == -31  # SIGSYS


def test_retain_set_fails_what_it_lacks(tmp_path: Path) -> None:
    f = appc.SeccompFilter(RETAIN, ("@rkt/default-whitelist",), "ENOSYS")
    prog = seccomp.filter_program(f)
    assert in_child(prog, mkdir_errno(tmp_path / "a")) == 0  # mkdir is whitelisted
    assert in_child(prog, lambda: os.sched_getscheduler(0)) == 0
    whitelist = [n for n in seccomp.GROUPS["@rkt/default-whitelist"] if n in SYSCALLS_X86_64]
    lacking = appc.SeccompFilter(
        RETAIN, tuple(n for n in whitelist if n not in ("mkdir", "mkdirat")), "ENOSYS")
    assert in_child(seccomp.filter_program(lacking), mkdir_errno(tmp_path / "b")) \
        == errno.ENOSYS


def test_appc_wildcards() -> None:
    assert seccomp.filter_program(appc.SeccompFilter(RETAIN, ("@appc.io/all",))) is None
    for mode, wildcard in ((REMOVE, "@appc.io/empty"), (RETAIN, "@appc.io/empty"),
                           (REMOVE, "@appc.io/all")):
        f = appc.SeccompFilter(mode, (wildcard,))
        assert seccomp.filter_program(f) == seccomp.default_program()
    with pytest.raises(seccomp.SeccompError, match="must be alone"):
        seccomp.validate(appc.SeccompFilter(REMOVE, ("@appc.io/empty", "mkdir")))


@pytest.mark.parametrize(("flag", "message"), [
    ("mode=remove,errno=EPERM,mkdri", "unknown syscall 'mkdri'"),
    ("mode=remove,errno=NOPE,mkdir", "unknown errno 'NOPE'"),
    ("mode=retain,@systemd/clock", "unknown seccomp group '@systemd/clock'"),
    ("mode=drop,mkdir", "invalid --seccomp mode 'drop'"),
    ("mkdir", "no mode"),
    ("mode=remove,errno=EPERM", "no syscall"),
    ("mode=remove,mkdir,errno=EPERM", "'errno=EPERM' out of place"),
])  # fmt: skip
def test_bad_seccomp_flags(flag: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_run_args(["img", "--seccomp", flag])


def test_seccomp_and_oom_flags_become_isolators() -> None:
    from pyrkt.stage0.prepare import PrepareOptions, merge_app

    args = parse_run_args(["img", "--seccomp=mode=retain,errno=ENOSYS,@docker/default-whitelist,"
                           "umount2", "--oom-score-adj", "-17"])
    image_app = appc.App(exec=("/bin/sh",), isolators=(
        appc.Isolator(appc.ISO_SECCOMP_REMOVE, {"set": ["mkdir"]}),))
    app = merge_app(image_app, args.apps[0], PrepareOptions())
    assert [i.to_dict() for i in app.isolators] == [
        {"name": "os/linux/seccomp-retain-set",
         "value": {"set": ["@docker/default-whitelist", "umount2"], "errno": "ENOSYS"}},
        {"name": "os/linux/oom-score-adj", "value": -17},
    ]
    assert appc.oom_score_adj(app) == -17
    assert appc.seccomp_filter(app) == appc.SeccompFilter(
        RETAIN, ("@docker/default-whitelist", "umount2"), "ENOSYS")


@pytest.mark.parametrize("value", ["1001", "-1001", "x", ""])
def test_bad_oom_score_adj(value: str) -> None:
    with pytest.raises(UsageError, match="--oom-score-adj"):
        parse_run_args(["img", f"--oom-score-adj={value}"])


def test_bad_isolators_in_a_manifest() -> None:
    two = appc.App(isolators=(appc.Isolator(appc.ISO_SECCOMP_REMOVE, {"set": ["mkdir"]}),
                              appc.Isolator(appc.ISO_SECCOMP_RETAIN, {"set": ["read"]})))
    with pytest.raises(RktError, match="too many seccomp isolators"):
        appc.seccomp_filter(two)
    no_set = appc.App(isolators=(appc.Isolator(appc.ISO_SECCOMP_REMOVE, {"errno": "EPERM"}),))
    with pytest.raises(RktError, match='"set" must be a non-empty list'):
        appc.seccomp_filter(no_set)
    oom = appc.App(isolators=(appc.Isolator(appc.ISO_OOM_SCORE_ADJ, "high"),))
    with pytest.raises(RktError, match="from -1000 to 1000"):
        appc.oom_score_adj(oom)


def test_syscall_table_matches_known_numbers() -> None:
    assert (SYSCALLS_X86_64["read"], SYSCALLS_X86_64["mkdir"], SYSCALLS_X86_64["mount"],
            SYSCALLS_X86_64["unshare"], SYSCALLS_X86_64["clone3"]) == (0, 83, 165, 272, 435)
