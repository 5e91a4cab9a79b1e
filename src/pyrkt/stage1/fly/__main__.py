"""`python -m pyrkt.stage1.fly run|enter|stop|gc ...`: the fly flavor's entrypoints.
`enter`, `stop` and `gc` are the container flavor's (they only need the pid, the app's
rootfs and the app's recorded environment)."""

from __future__ import annotations

import os
import sys

from pyrkt import log
from pyrkt.errors import RktError


def main(argv: list[str]) -> int:
    log.set_prefix("stage1")
    if argv and argv[0] == "run":
        if "--debug" in argv or "--debug=true" in argv:
            log.set_debug(True)
        try:
            from pyrkt.stage1.container.args import parse_run
            from pyrkt.stage1.fly import run

            return run.main(parse_run(argv[1:]))
        except (RktError, OSError) as e:
            print(f"stage1: {e}", file=sys.stderr)
            return 254
    from pyrkt.stage1.container.__main__ import main as container_main

    return container_main(argv)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # everything is cleaned up: skip the interpreter's teardown
