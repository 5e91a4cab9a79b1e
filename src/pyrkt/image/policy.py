"""`--pull-policy`: a module of its own so that `rkt run` can check the flag without
importing the fetch machinery (an image ID already in the store needs none of it)."""

from __future__ import annotations

import enum

from pyrkt.errors import UsageError


class PullPolicy(enum.StrEnum):
    NEW = "new"
    NEVER = "never"
    UPDATE = "update"


def parse_pull_policy(value: str) -> PullPolicy:
    try:
        return PullPolicy(value)
    except ValueError:
        raise UsageError(
            f"invalid value {value!r} for --pull-policy", "valid: new, never, update"
        ) from None
