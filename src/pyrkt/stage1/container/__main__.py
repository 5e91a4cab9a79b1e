"""`python -m pyrkt.stage1.container run|enter|stop|gc ...`: the coreos flavor's
entrypoints. Prints rkt-style one-line errors and exits 254 on its own failures."""

from __future__ import annotations

import os
import sys

from pyrkt.stage1.container import args


def _run(rest: list[str]) -> int:
    from pyrkt.stage1.container import run

    return run.main(args.parse_run(rest))


def _enter(rest: list[str]) -> int:
    from pyrkt.stage1.container import enter

    return enter.main(args.parse_enter(rest))


def _stop(rest: list[str]) -> int:
    from pyrkt.stage1.container import stop

    return stop.stop(args.parse_stop(rest))


def _gc(rest: list[str]) -> int:
    from pyrkt.stage1.container import stop

    return stop.gc(args.parse_uuid(rest, "gc"))


def main(argv: list[str]) -> int:
    return args.entry_main(argv, "container",
                           {"run": _run, "enter": _enter, "stop": _stop, "gc": _gc})


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # everything is cleaned up: skip the interpreter's teardown
