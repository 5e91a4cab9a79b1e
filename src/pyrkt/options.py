"""rkt's global options, shared by every verb."""

from __future__ import annotations

import enum
from pathlib import Path

from pyrkt.builddefaults import UNCONFIGURED, BuildDefaults
from pyrkt.errors import UsageError
from pyrkt.record import field, record


class Insecure(enum.StrEnum):
    """The values of --insecure-options, spelled as on the command line."""

    NONE = "none"
    IMAGE = "image"
    TLS = "tls"
    ONDISK = "ondisk"
    HTTP = "http"
    PUBKEY = "pubkey"
    CAPABILITIES = "capabilities"
    PATHS = "paths"
    SECCOMP = "seccomp"
    ALL_FETCH = "all-fetch"
    ALL_RUN = "all-run"
    ALL = "all"


_GROUPS: dict[Insecure, frozenset[Insecure]] = {
    Insecure.ALL_FETCH: frozenset(
        {Insecure.IMAGE, Insecure.TLS, Insecure.HTTP, Insecure.PUBKEY, Insecure.ONDISK}
    ),
    Insecure.ALL_RUN: frozenset({Insecure.CAPABILITIES, Insecure.PATHS, Insecure.SECCOMP}),
}
_GROUPS[Insecure.ALL] = _GROUPS[Insecure.ALL_FETCH] | _GROUPS[Insecure.ALL_RUN]


def parse_insecure(value: str) -> frozenset[Insecure]:
    """'image,http' -> {IMAGE, HTTP}; groups expanded; unknown names rejected."""
    out: set[Insecure] = set()
    for raw in value.split(","):
        name = raw.strip()
        if not name:
            continue
        try:
            opt = Insecure(name)
        except ValueError:
            valid = ", ".join(o.value for o in Insecure)
            raise UsageError(
                f"invalid value {name!r} for --insecure-options", f"valid: {valid}"
            ) from None
        if opt is Insecure.NONE:
            continue
        out |= _GROUPS.get(opt, frozenset({opt}))
    return frozenset(out)


DEFAULT_DIR = Path("/var/lib/rkt")
DEFAULT_LOCAL_CONFIG = Path("/etc/rkt")
DEFAULT_SYSTEM_CONFIG = Path("/usr/lib/rkt")


@record
class GlobalOptions:
    """rkt's global flags."""

    dir: Path = DEFAULT_DIR
    local_config: Path = DEFAULT_LOCAL_CONFIG
    system_config: Path = DEFAULT_SYSTEM_CONFIG
    user_config: Path | None = None
    debug: bool = False
    insecure: frozenset[Insecure] = field(default_factory=frozenset)
    build: BuildDefaults = UNCONFIGURED  # not a flag: what ./configure chose for this rkt

    def allows(self, opt: Insecure) -> bool:
        return opt in self.insecure

    @property
    def config_dirs(self) -> list[Path]:
        """Configuration directories, lowest precedence first."""
        dirs = [self.system_config, self.local_config]
        if self.user_config is not None:
            dirs.append(self.user_config)
        return dirs
