"""The one family of errors pyrkt raises for its own failures.

    RktError                 rkt's own failure: one line on stderr, exit 254
     ├── UsageError          bad flags or arguments
     ├── CommandFailed       a child process failed (exact argv + exit code or signal)
     ├── NotFound            no pod / image matches ("no matches found for ...")
     ├── Ambiguous           a prefix matches several ("ambiguous uuid ...")
     └── PermissionRequired  root-only command run by someone else

The CLI is the only place that turns these into output and an exit status; everything
else raises. Low-level errors are re-raised as one of these `from` their cause.

    Terminated (a BaseException, like KeyboardInterrupt)
                             a SIGTERM/SIGHUP turned into an exception while some work
                             cleans up after itself (`pyrkt.interrupt`); the CLI then
                             dies of the same signal
"""

from __future__ import annotations

import signal
from collections.abc import Sequence

RKT_EXIT_CODE = 254
# what a user who may not touch the data directory is told (rkt's `rkt` group model)
PERMISSION_HINT = ("run it as root; members of the rkt group may list, status, "
                   "image list and fetch")  # fmt: skip


class RktError(Exception):
    """A failure of rkt itself; `hint` tells the user what to do about it."""

    exit_code = RKT_EXIT_CODE

    def __init__(self, message: str, hint: str | None = None, *,
                 component: str | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.message = message
        self.hint = hint
        # who says it, when not the verb: rkt's stage1 said some of what pyrkt checks in
        # stage0, before the pod exists ("stage1: failed to setup network: ...")
        self.component = component

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(RktError):
    """Bad command-line usage."""


class NotFound(RktError):
    """Nothing matched what the user named."""


class Ambiguous(RktError):
    """A prefix matched more than one thing."""


class PermissionRequired(RktError):
    """The command needs root."""

    def __init__(self) -> None:
        super().__init__("cannot run as unprivileged user")


def go_quote(text: str) -> str:
    """`text` as Go's %q prints it: rkt's messages quote names, UUIDs and paths so."""
    import json

    return json.dumps(text, ensure_ascii=False)


def describe_status(returncode: int) -> str:
    """'exit status 3' or 'killed by SIGKILL' for a subprocess return code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class CommandFailed(RktError):
    """A child process failed; the message names the exact command."""

    def __init__(
        self, argv: Sequence[str], returncode: int, stderr: str | None = None
    ) -> None:
        cmd = " ".join(argv)
        detail = ""
        if stderr:
            last = stderr.strip().splitlines()
            if last:
                detail = f": {last[-1]}"
        super().__init__(f"{cmd!r} failed with {describe_status(returncode)}{detail}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


class Terminated(BaseException):  # a BaseException, like KeyboardInterrupt
    """The process got a terminating signal; unwinding to exit by it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum
