"""The one way pyrkt runs a child process.

`run()` logs `+ argv` under --debug, closes stdin unless input is given, passes an
explicit environment when asked, and turns a failure into `CommandFailed` naming the
exact command and its exit status or the killing signal.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from pyrkt import log
from pyrkt.errors import CommandFailed, RktError

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False

if TYPE_CHECKING:  # imported when a command runs: `rkt run` starts none
    import subprocess

Arg = str | Path


def argv_str(argv: Sequence[Arg]) -> list[str]:
    return [str(a) for a in argv]


def run(
    argv: Sequence[Arg],
    *,
    check: bool = True,
    capture: bool = False,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    text: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run argv to completion. With capture, stdout and stderr are returned as text."""
    import subprocess

    args = argv_str(argv)
    log.debug("+ " + shlex.join(args))
    try:
        cp = subprocess.run(
            args,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            text=text,
            check=False,
        )
    except FileNotFoundError as e:
        raise RktError(f"{args[0]}: command not found", "is it installed?") from e
    except subprocess.TimeoutExpired as e:
        raise RktError(f"{shlex.join(args)!r} timed out after {timeout}s") from e
    if check and cp.returncode != 0:
        raise CommandFailed(args, cp.returncode, cp.stderr if capture else None)
    return cp


def output(argv: Sequence[Arg], **kw: object) -> str:
    """stdout of a command that must succeed."""
    return run(argv, capture=True, **kw).stdout  # type: ignore[arg-type]
