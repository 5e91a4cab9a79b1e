"""The stage1 entrypoint arguments (rkt's stage1 contract), shared by coreos, fly and kvm.

`run [--debug] --net=LIST [--interactive] [--hostname=H] [--local-config=DIR] ... UUID`,
`enter --pid=PID --appname=APP [--] CMD...`, `stop [--force] UUID`, `gc UUID`.
Flags we do not know are accepted (rkt's contract grows with flags a stage1 may ignore)
and kept in `extra`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from pyrkt.errors import UsageError
from pyrkt.record import field, record, replace
from pyrkt.stage1.plan import PodPlan

_TRUE = ("", "true", "1", "yes")


@record
class RunArgs:
    """The `run` entrypoint's arguments."""

    uuid: str
    debug: bool = False
    net: str | None = None  # None: as the pod's plan says
    interactive: bool | None = None
    hostname: str | None = None
    local_config: str | None = None
    disable_capabilities: bool = False
    disable_paths: bool = False
    disable_seccomp: bool = False
    extra: dict[str, str] = field(default_factory=dict)


@record
class EnterArgs:
    """The `enter` entrypoint's arguments."""

    pid: int | None
    appname: str | None
    cmd: tuple[str, ...]


@record
class StopArgs:
    """The `stop` entrypoint's arguments."""

    uuid: str
    force: bool = False


def _split(argv: list[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """--k=v / --k flags, positionals, and what follows `--`."""
    flags: dict[str, str] = {}
    pos: list[str] = []
    rest: list[str] = []
    for i, a in enumerate(argv):
        if a == "--":
            rest = argv[i + 1 :]
            break
        if a.startswith("--"):
            k, _, v = a[2:].partition("=")
            flags[k] = v
        elif a.startswith("-") and len(a) > 1:
            flags[a[1:]] = ""
        else:
            pos.append(a)
    return flags, pos, rest


def _bool(v: str | None) -> bool:
    return v is not None and v.lower() in _TRUE


def parse_run(argv: list[str]) -> RunArgs:
    flags, pos, _ = _split(argv)
    if len(pos) != 1:
        raise UsageError("stage1 run: expected exactly one pod UUID", f"got {pos!r}")
    known = {"debug", "net", "interactive", "hostname", "local-config",
             "disable-capabilities-restriction", "disable-paths", "disable-seccomp"}
    return RunArgs(
        uuid=pos[0],
        debug=_bool(flags.get("debug")),
        net=flags.get("net") or None,
        interactive=_bool(flags["interactive"]) if "interactive" in flags else None,
        hostname=flags.get("hostname") or None,
        local_config=flags.get("local-config") or None,
        disable_capabilities=_bool(flags.get("disable-capabilities-restriction")),
        disable_paths=_bool(flags.get("disable-paths")),
        disable_seccomp=_bool(flags.get("disable-seccomp")),
        extra={k: v for k, v in flags.items() if k not in known},
    )


def parse_enter(argv: list[str]) -> EnterArgs:
    flags, pos, rest = _split(argv)
    pid = flags.get("pid")
    try:
        pid_n = int(pid) if pid else None
    except ValueError:
        raise UsageError(f"stage1 enter: invalid --pid {pid!r}") from None
    cmd = tuple(rest or pos)
    return EnterArgs(pid=pid_n, appname=flags.get("appname") or None, cmd=cmd)


def parse_stop(argv: list[str]) -> StopArgs:
    flags, pos, _ = _split(argv)
    if len(pos) != 1:
        raise UsageError("stage1 stop: expected exactly one pod UUID", f"got {pos!r}")
    return StopArgs(uuid=pos[0], force=_bool(flags.get("force")))


def parse_uuid(argv: list[str], verb: str) -> str:
    _, pos, _ = _split(argv)
    if len(pos) != 1:
        raise UsageError(f"stage1 {verb}: expected exactly one pod UUID", f"got {pos!r}")
    return pos[0]


def plan_for(args: RunArgs, pod: Path) -> PodPlan:
    """The pod's plan from the planner, with the contract flags applied; the pod's
    implicit volumes made."""
    from pyrkt.stage1.planner import build_plan
    from pyrkt.stage1.volumes import make_implicit

    plan = build_plan(pod)
    make_implicit(plan)
    changes: dict[str, object] = {}
    if args.net is not None:
        changes["net"] = args.net
    if args.interactive is not None:
        changes["interactive"] = args.interactive
    if args.hostname:
        changes["hostname"] = args.hostname
    if not plan.hostname and not args.hostname:
        changes["hostname"] = f"rkt-{args.uuid}"
    return replace(plan, **changes)


Entrypoint = Callable[[list[str]], int]


def entry_main(argv: list[str], flavor: str, verbs: Mapping[str, Entrypoint]) -> int:
    """`python -m pyrkt.stage1.<flavor> VERB ARGS...`: dispatch to the flavor's entrypoint;
    the stage1's own failures are one `stage1: ...` line and exit 254."""
    from pyrkt import log
    from pyrkt.errors import RktError

    log.set_prefix("stage1")
    if not argv:
        print(f"usage: python -m pyrkt.stage1.{flavor} {'|'.join(verbs)} ...", file=sys.stderr)
        return 254
    verb, rest = argv[0], argv[1:]
    if "--debug" in rest or "--debug=true" in rest:
        log.set_debug(True)
    try:
        if verb not in verbs:
            raise RktError(f"unknown stage1 entrypoint {verb!r}")
        return verbs[verb](rest)
    except (RktError, OSError) as e:
        return log.failed(e)
