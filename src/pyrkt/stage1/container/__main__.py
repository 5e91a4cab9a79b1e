"""`python -m pyrkt.stage1.container run|enter|stop|gc ...`: the coreos flavor's
entrypoints. Prints rkt-style one-line errors and exits 254 on its own failures."""

from __future__ import annotations

import os
import sys

from pyrkt import log
from pyrkt.errors import RktError


def main(argv: list[str]) -> int:
    log.set_prefix("stage1")
    if not argv:
        print("usage: python -m pyrkt.stage1.container run|enter|stop|gc ...", file=sys.stderr)
        return 254
    verb, rest = argv[0], argv[1:]
    if "--debug" in rest or "--debug=true" in rest:
        log.set_debug(True)
    try:
        from pyrkt.stage1.container import args

        if verb == "run":
            from pyrkt.stage1.container import run

            return run.main(args.parse_run(rest))
        if verb == "enter":
            from pyrkt.stage1.container import enter

            return enter.main(args.parse_enter(rest))
        if verb == "stop":
            from pyrkt.stage1.container import stop

            return stop.stop(args.parse_stop(rest))
        if verb == "gc":
            from pyrkt.stage1.container import stop

            return stop.gc(args.parse_uuid(rest, "gc"))
        raise RktError(f"unknown stage1 entrypoint {verb!r}")
    except RktError as e:
        print(f"stage1: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        print(f"stage1: {e}", file=sys.stderr)
        return 254


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # everything is cleaned up: skip the interpreter's teardown
