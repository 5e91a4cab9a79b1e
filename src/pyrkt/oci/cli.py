"""`rkt-runtime`: runc's command line, for containerd's runc shim, conmon and people.

    rkt-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug]
                [--systemd-cgroup] COMMAND ...

Commands: create, start, state, kill, delete, run, exec, ps, list, features; `--version`.
Errors: one line on stderr (and an `error` record in --log), exit status 1 (255 for
`exec`, whose status is otherwise the process's), as runc.
The only module of the package that prints or exits.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pyrkt import __version__
from pyrkt.errors import RktError, UsageError
from pyrkt.oci.runlog import RuntimeLog
from pyrkt.oci.state import DEFAULT_ROOT, OCI_VERSION, Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyrkt.oci.spec import Process

EXIT_ERROR = 1
EXIT_EXEC_ERROR = 255
UNSUPPORTED = ("pause", "resume", "update", "checkpoint", "restore", "events", "spec")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rkt-runtime", add_help=True,
                description="OCI runtime (runc's command line) running containers in VMs")
    p.add_argument("--root", default=str(DEFAULT_ROOT))
    p.add_argument("--log", default=None)
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true")  # accepted, ignored
    p.add_argument("--criu", default=None)  # accepted, ignored
    p.add_argument("--rootless", default=None)  # accepted, ignored
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="verb")

    def create_flags(c: argparse.ArgumentParser) -> None:
        c.add_argument("-b", "--bundle", default=".")
        c.add_argument("--pid-file", default=None)
        c.add_argument("--console-socket", default=None)
        c.add_argument("--no-pivot", action="store_true")
        c.add_argument("--no-new-keyring", action="store_true")
        c.add_argument("--preserve-fds", type=int, default=0)
        c.add_argument("id")

    create_flags(sub.add_parser("create"))
    r = sub.add_parser("run")
    r.add_argument("-d", "--detach", action="store_true")
    create_flags(r)
    sub.add_parser("start").add_argument("id")
    sub.add_parser("state").add_argument("id")
    k = sub.add_parser("kill")
    k.add_argument("-a", "--all", action="store_true")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="SIGTERM")
    d = sub.add_parser("delete")
    d.add_argument("-f", "--force", action="store_true")
    d.add_argument("id")
    e = sub.add_parser("exec")
    e.add_argument("-p", "--process", default=None)
    e.add_argument("-d", "--detach", action="store_true")
    e.add_argument("-t", "--tty", action="store_true")
    e.add_argument("--pid-file", default=None)
    e.add_argument("--console-socket", default=None)
    e.add_argument("--cwd", default=None)
    e.add_argument("-e", "--env", action="append", default=[])
    e.add_argument("-u", "--user", default=None)
    e.add_argument("--additional-gids", "-g", action="append", default=[])
    e.add_argument("--no-new-privs", action="store_true")
    e.add_argument("--preserve-fds", type=int, default=0)
    e.add_argument("id")
    e.add_argument("argv", nargs=argparse.REMAINDER)
    ps = sub.add_parser("ps")
    ps.add_argument("-f", "--format", choices=("table", "json"), default="table")
    ps.add_argument("id")
    ps.add_argument("ps_args", nargs=argparse.REMAINDER)
    ls = sub.add_parser("list")
    ls.add_argument("-f", "--format", choices=("table", "json"), default="table")
    ls.add_argument("-q", "--quiet", action="store_true")
    sub.add_parser("features")
    for name in UNSUPPORTED:
        sub.add_parser(name).add_argument("rest", nargs=argparse.REMAINDER)
    return p


def _exec_process(store: Store, a: argparse.Namespace) -> Process:
    """The exec's process: --process FILE, else the container's own with the command
    and the flags applied (as runc)."""
    from pyrkt.oci import spec as ocispec
    from pyrkt.record import replace

    if a.process:
        data = ocispec.read_json(Path(a.process), "process")
        if not isinstance(data, dict):
            raise ocispec.SpecError("process: expected an object")
        return ocispec.parse_process(data)
    if not a.argv:
        raise UsageError("exec: a command is needed (or --process FILE)")
    st = store.load(a.id)
    base = ocispec.load_bundle(Path(st.bundle)).process
    user = base.user
    if a.user:
        uid, _, gid = a.user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise UsageError("--user: expected UID[:GID] in numbers")
        user = replace(user, uid=int(uid), gid=int(gid) if gid else user.gid)
    if a.additional_gids:
        user = replace(user, additional_gids=tuple(int(g) for g in a.additional_gids))
    return replace(base, args=tuple(a.argv), terminal=a.tty, user=user,
                   env=base.env + tuple(a.env), cwd=a.cwd or base.cwd,
                   no_new_privileges=base.no_new_privileges or a.no_new_privs)


def _ps(store: Store, cid: str, fmt: str) -> str:
    """Host processes of the container: its container process and its QEMU."""
    from pyrkt.oci import container
    from pyrkt.oci.state import Status

    st = store.load(cid)
    pids = []
    if store.status(st) in (Status.CREATED, Status.RUNNING):
        pids.append(st.pid)
        q = container.hypervisor_of(store, st)
        if q is not None:
            pids.append(q)
    if fmt == "json":
        return json.dumps(pids)
    return "PID\tCMD\n" + "".join(
        f"{p}\t{Path(f'/proc/{p}/comm').read_text().strip()}\n" for p in pids
        if Path(f"/proc/{p}/comm").exists())


def _list(store: Store, fmt: str, quiet: bool) -> str:
    states = []
    for cid in store.ids():
        try:
            st = store.load(cid)
        except RktError:
            continue
        states.append(store.oci_state(st))
    if quiet:
        return "".join(s["id"] + "\n" for s in states)
    if fmt == "json":
        return json.dumps(states) + "\n"
    rows = ["ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER"]
    rows += [f"{s['id']}\t{s['pid']}\t{s['status']}\t{s['bundle']}\t{s['created']}\t"
             for s in states]
    return "\n".join(rows) + "\n"


def dispatch(a: argparse.Namespace, rlog: RuntimeLog) -> int:
    store = Store(Path(a.root))
    cmd = a.verb
    if cmd in UNSUPPORTED:
        raise RktError(f"{cmd} is not supported by rkt-runtime", "see docs/oci-runtime.md")
    if cmd == "features":
        from pyrkt.oci.features import features

        print(json.dumps(features(), indent=4))
        return 0
    if cmd == "list":
        sys.stdout.write(_list(store, a.format, a.quiet))
        return 0
    if cmd == "state":
        print(json.dumps(store.oci_state(store.load(a.id)), indent=2))
        return 0
    if cmd == "delete" and a.force and not store.dir(a.id).is_dir():
        return 0  # the shim deletes twice (task, then container): nothing to import
    if cmd == "ps":
        sys.stdout.write(_ps(store, a.id, a.format))
        return 0
    from pyrkt.oci import container

    if cmd in ("create", "run"):
        args = container.CreateArgs(
            cid=a.id, bundle=Path(a.bundle),
            pid_file=Path(a.pid_file).absolute() if a.pid_file else None,
            console_socket=a.console_socket,
        )
        container.create(store, args, rlog)
        if cmd == "create":
            return 0
        container.start(store, a.id)
        if a.detach:
            return 0
        return container.wait_and_delete(store, a.id)
    if cmd == "start":
        container.start(store, a.id)
        return 0
    if cmd == "kill":
        container.kill(store, a.id, container.parse_signal(a.signal), a.all)
        return 0
    if cmd == "delete":
        container.delete(store, a.id, a.force)
        return 0
    if cmd == "exec":
        from pyrkt.oci import execproc

        process = _exec_process(store, a)
        return execproc.exec_in(store, execproc.ExecArgs(
            cid=a.id, process=process, detach=a.detach,
            pid_file=Path(a.pid_file).absolute() if a.pid_file else None,
            console_socket=a.console_socket,
        ), rlog)
    raise UsageError("no command given", "see rkt-runtime --help")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rlog = RuntimeLog(None)
    try:
        a = _parser().parse_args(argv)
        rlog = RuntimeLog(a.log, a.log_format, a.debug)
        if a.version:
            print(f"rkt-runtime version {__version__}\nspec: {OCI_VERSION}\n"
                  "isolation: kvm (pyrkt's kvm stage1)")
            return 0
        if a.debug:
            from pyrkt import log

            log.set_debug(True)
        rlog.debug("rkt-runtime " + " ".join(argv))
        return dispatch(a, rlog)
    except (RktError, OSError) as e:
        rlog.error(str(e))
        print(f"rkt-runtime: {e}", file=sys.stderr, flush=True)
        # exec's own status is the process's: its failures are 255, as runc's
        return EXIT_EXEC_ERROR if "exec" in argv else EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
