"""The `rkt` command: global flags, then one verb, dispatched to its module lazily.

Every verb module exposes `main(argv: list[str], g: GlobalOptions) -> int`. This is the
only place that turns an error into a one-line message and exit 254: an `RktError` (a
user's error: never a traceback), an `OSError` nobody turned into one (a permission, a
missing or wrong path), or a bug (a traceback for these two with --debug). A closed
stdout (`rkt list | head -1`) ends the command as it ended rkt, a Go program: killed by
SIGPIPE, silently.
"""

from __future__ import annotations

import gc
import importlib
import sys

from pyrkt import log
from pyrkt.errors import RktError, Terminated

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# verb -> (module, one-line help). Modules are imported only when their verb runs, so
# that `rkt run` pays for nothing else.
VERBS: dict[str, tuple[str, str]] = {
    "run": ("pyrkt.cli.run", "Run image(s) in a pod in rkt"),
    "prepare": ("pyrkt.cli.run", "Prepare to run image(s) in a pod in rkt"),
    "run-prepared": ("pyrkt.cli.pods", "Run a prepared application pod in rkt"),
    "list": ("pyrkt.cli.pods", "List pods"),
    "status": ("pyrkt.cli.pods", "Check the status of a rkt pod"),
    "stop": ("pyrkt.cli.pods", "Stop a pod"),
    "rm": ("pyrkt.cli.pods", "Remove all files and resources associated with an exited pod"),
    "gc": ("pyrkt.cli.pods", "Garbage collect rkt pods no longer in use"),
    "cat-manifest": ("pyrkt.cli.pods", "Inspect and print the pod manifest"),
    "enter": ("pyrkt.cli.pods", "Enter the namespaces of an app within a rkt pod"),
    "export": ("pyrkt.cli.pods", "Export an app from an exited pod to an ACI file"),
    "fetch": ("pyrkt.cli.fetch", "Fetch image(s) and store them in the local store"),
    "image": ("pyrkt.cli.image", "Operate on image(s) in the local store"),
    "trust": ("pyrkt.cli.trust", "Trust a key for image verification"),
    "stage1": ("pyrkt.cli.stage1", "Build stage1 images (flavors x hypervisors)"),
    "config": ("pyrkt.cli.config", "Print configuration for each stage in JSON format"),
    "version": ("pyrkt.cli.version", "Print the version and exit"),
}

POD_STARTING_VERBS = ("run", "prepare", "run-prepared")
MISSING_COMMAND = 2  # rkt's exit status for `rkt` without a verb ("invalid argument")


def usage() -> str:
    lines = [
        "NAME:",
        "\trkt - rkt, the application container runner",
        "",
        "USAGE:",
        "\trkt [command]",
        "",
        "COMMANDS:",
    ]
    lines += [f"\t{verb:<14}{text}" for verb, (_, text) in VERBS.items()]
    lines += [
        "",
        "GLOBAL OPTIONS:",
        "\t--debug[=false]\t\tprint out more debug information to stderr",
        "\t--dir=/var/lib/rkt\trkt data directory",
        "\t--insecure-options=none\tcomma-separated list of security features to disable."
        " Allowed values: \"none\", \"image\", \"tls\", \"ondisk\", \"http\", \"pubkey\","
        " \"capabilities\", \"paths\", \"seccomp\", \"all-fetch\", \"all-run\", \"all\"",
        "\t--local-config=/etc/rkt\tlocal configuration directory",
        "\t--system-config=/usr/lib/rkt\tsystem configuration directory",
        "\t--user-config=\t\tuser configuration directory",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None, build: dict[str, Any] | None = None) -> int:
    """The `rkt` command. `build` is what ./configure chose for a built rkt (the launcher
    `make` writes passes it; pyrkt.builddefaults), None for an unconfigured one."""
    # Starting allocates a lot and frees little: the cyclic GC's passes over ~100 fresh
    # modules are ~2-5% of `rkt run`'s start-up. Off while starting; back on once the
    # verb's module is imported, except for the verbs that start a pod: a stage1 run in
    # this process turns it back on (pyrkt.stage0.run.run_inprocess), `prepare` is short.
    gc.disable()
    from pyrkt.cli.common import extract_globals

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or any(a.startswith("--debug=t") for a in args)
    try:
        if build is None:
            g, rest = extract_globals(args)
        else:
            from pyrkt.builddefaults import BuildDefaults

            g, rest = extract_globals(args, BuildDefaults.from_dict(build))
        log.set_debug(g.debug)
        if not rest:  # rkt's runMissingCommand: the complaint, the usage, exit 2
            print("rkt: missing command", file=sys.stderr)
            print(usage())
            return MISSING_COMMAND
        if rest[0] in ("help", "-h", "--help"):
            if len(rest) > 1 and rest[1] in VERBS:
                rest = [rest[1], "--help"]
            else:
                print(usage())
                return 0
        verb, verb_args = rest[0], rest[1:]
        if verb not in VERBS:
            raise RktError(f"unknown command {verb!r} for \"rkt\"", "see 'rkt help'")
        module = importlib.import_module(VERBS[verb][0])
        if verb not in POD_STARTING_VERBS:
            gc.enable()
        code: int = module.main([verb, *verb_args], g)
        if sys.stdout is not None:
            sys.stdout.flush()  # a closed stdout shows here, not in the interpreter's exit
        return code
    except KeyboardInterrupt:
        return 130
    except Terminated as e:
        # cleaned up on the way here: now end as without a handler, output kept
        if sys.stdout is not None:
            sys.stdout.flush()
        die_of(e.signum)
        raise  # not reached
    except BaseException as e:
        if isinstance(e, BrokenPipeError) and stdout_closed():
            import signal

            die_of(signal.SIGPIPE)
        if isinstance(e, SystemExit):
            raise
        if debug and not isinstance(e, RktError):  # a bug, or an error nobody converted
            import traceback

            traceback.print_exc()
        err = e if isinstance(e, RktError) else describe(e, locals().get("g"))
        who = err.component or prog_name(rest if "rest" in locals() else [])
        print(f"{who}: {err}", file=sys.stderr)
        return err.exit_code


def prog_name(rest: list[str]) -> str:
    """rkt's prefix: the (sub)command's name (`run`, `cat-manifest` for `image
    cat-manifest`)."""
    if not rest:
        return "rkt"
    if rest[0] == "image" and len(rest) > 1 and not rest[1].startswith("-"):
        return rest[1]
    return rest[0]


def describe(e: BaseException, g: object) -> RktError:
    """An error nothing turned into an RktError, as one: an OSError says what failed
    on which path; anything else is a bug in pyrkt."""
    if not isinstance(e, OSError):
        return RktError(f"internal error: {type(e).__name__}: {e}",
                        "this is a bug; --debug shows where")  # fmt: skip
    import errno

    data_dir = getattr(g, "dir", None)
    if e.errno == errno.ENOTDIR and data_dir is not None and not data_dir.is_dir() \
            and data_dir.exists():  # fmt: skip
        return RktError(f"data directory {data_dir} is not a directory", "check --dir")
    where = f": {e.filename}" if e.filename else ""
    what = e.strerror or str(e)
    if e.errno in (errno.EACCES, errno.EPERM):
        from pyrkt.errors import PERMISSION_HINT

        return RktError(f"{what}{where}", PERMISSION_HINT)
    return RktError(f"{what}{where}")


def stdout_closed() -> bool:
    """Whether stdout is a pipe or socket whose reader is gone."""
    import select

    try:
        p = select.poll()
        p.register(1, 0)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in p.poll(0))
    except (OSError, ValueError):
        return False


def die_of(signum: int) -> None:
    """End killed by the signal, as a Unix tool (and rkt) does: SIGPIPE on a closed
    stdout, SIGTERM once a fetch it interrupted has cleaned up (pyrkt.interrupt)."""
    import os
    import signal

    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # not reached
