"""Global flags, accepted anywhere before a lone `--`, as cobra's persistent flags were."""

from __future__ import annotations

import os
from pathlib import Path

from pyrkt.builddefaults import UNCONFIGURED, BuildDefaults
from pyrkt.errors import UsageError
from pyrkt.options import DEFAULT_DIR, GlobalOptions, parse_insecure

_VALUE_FLAGS = {
    "--dir": "dir",
    "--local-config": "local_config",
    "--system-config": "system_config",
    "--user-config": "user_config",
    "--insecure-options": "insecure",
}
_BOOL_FLAGS = {"--debug": "debug"}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_bool(flag: str, value: str) -> bool:
    v = value.lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise UsageError(f"invalid boolean value {value!r} for {flag}")


def configured_data_dir(system_config: Path, local_config: Path) -> Path:
    """The `data` path of rkt's `paths` config (local overriding system), else /var/lib/rkt.

    rkt reads `paths.d` in the system and local config dirs only; `--dir` wins over both.
    """
    if not ((system_config / "paths.d").is_dir() or (local_config / "paths.d").is_dir()):
        return DEFAULT_DIR  # the common case: no file to read
    from pyrkt.confdir import paths_config

    data = paths_config(system_config, local_config).get("data")
    return Path(data) if data else DEFAULT_DIR


def extract_globals(
    argv: list[str], build: BuildDefaults = UNCONFIGURED
) -> tuple[GlobalOptions, list[str]]:
    """Pull rkt's global flags out of argv; return them and the remaining arguments.

    Scanning stops at a lone `--`: what follows belongs to apps. `build` is what
    ./configure chose for this rkt (pyrkt.builddefaults).
    """
    values: dict[str, str] = {}
    debug = False
    rest: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            rest.extend(argv[i:])
            break
        name, eq, val = tok.partition("=")
        if name in _VALUE_FLAGS:
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"flag needs an argument: {name}")
                i += 1
                val = argv[i]
            values[_VALUE_FLAGS[name]] = val
        elif name in _BOOL_FLAGS:
            debug = parse_bool(name, val) if eq else True
        else:
            rest.append(tok)
        i += 1
    g = GlobalOptions()
    user_default = os.environ.get("HOME")
    local_config = Path(values.get("local_config", g.local_config))
    system_config = Path(values.get("system_config", g.system_config))
    return (
        GlobalOptions(
            dir=Path(values["dir"]) if "dir" in values
            else configured_data_dir(system_config, local_config),
            local_config=local_config,
            system_config=system_config,
            user_config=Path(values["user_config"])
            if "user_config" in values
            else (Path(user_default) / ".config/rkt" if user_default else None),
            debug=debug,
            insecure=parse_insecure(values.get("insecure", "none")),
            build=build,
        ),
        rest,
    )
