"""Diagnostics on stderr: `debug()` only with --debug, `info()` always.

rkt prefixes its own messages with the component that printed them; we do the same
(`stage0: ...`, `stage1: ...`). Progress bars live in the CLI; libraries call `info`.
"""

from __future__ import annotations

import os
import sys

_debug = os.environ.get("RKT_DEBUG", "") not in ("", "0", "false")
_prefix = "rkt"


def set_debug(on: bool) -> None:
    global _debug
    _debug = on
    if on:
        os.environ["RKT_DEBUG"] = "1"


def debug_enabled() -> bool:
    return _debug


def set_prefix(prefix: str) -> None:
    """Name the component whose messages these are (`stage0`, `stage1`...)."""
    global _prefix
    _prefix = prefix


def debug(msg: str, component: str = "") -> None:
    """`component`: rkt's packages print under their own name (`image: ...`)."""
    if _debug:
        print(f"{component or _prefix}: {msg}", file=sys.stderr, flush=True)


def info(msg: str, component: str = "") -> None:
    print(f"{component or _prefix}: {msg}", file=sys.stderr, flush=True)


def warn(msg: str, component: str = "") -> None:
    print(f"{component or _prefix}: warning: {msg}", file=sys.stderr, flush=True)


def failed(e: Exception) -> int:
    """One `PREFIX: message` line for the failure that ends an entrypoint; its exit
    status (an RktError's own, 254 otherwise, as rkt)."""
    print(f"{_prefix}: {e}", file=sys.stderr, flush=True)
    code = getattr(e, "exit_code", 254)
    return code if isinstance(code, int) else 254
