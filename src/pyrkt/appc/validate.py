"""The checks every way into a pod shares, so that a bad value is refused before anything
exists on disk: `--name`, `--volume`, `--mount`, `--exec` and the other flags,
`--pod-manifest`, and the image manifests (the image is untrusted).

    ac_name(value, what)          an appc AC Name (app, volume, mount point, port names)
    ac_identifier(value, what)    an appc AC Identifier (image, label, annotation names)
    exec_argv(argv, what)         what an app executes
    abs_path(value, what)         an absolute path with no NUL
    env_name(name, what)          an environment variable's name
    kv_size(pairs, what)          the size cap on annotations and labels
    load_json(data, what)         JSON with a size and a nesting cap

Each raises `InvalidValue` (one line, exit 254) whose message starts with `what`: the
flag (`--name`) or the key path (`apps[0].name`) the value came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from pyrkt.appc.schema import ManifestError
from pyrkt.errors import UsageError

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# appc (schema/types/acname.go), as rkt checked names through types.NewACName: only
# [a-z0-9-], an alphanumeric first and last character. The length cap is ours: a name is
# a file name (`appsinfo/<app>`, `volumes/<volume>`, the app's status file) and a
# cgroup; rkt had none and failed with "file name too long" once the pod existed.
MAX_AC_NAME = 128
_AC_NAME_BAD_CHAR = re.compile(r"[^a-z0-9-]")
# appc's AC Identifier: lower-case URI unreserved characters plus "/", alphanumeric edges
MAX_AC_IDENTIFIER = 512
_ACID_BAD_CHAR = re.compile(r"[^a-z0-9\-._~/]")
# appc's environment variable names (schema/types/environment.go)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9.-]*")

MAX_MANIFEST_BYTES = 1 << 20  # a pod or image manifest
MAX_JSON_DEPTH = 64  # appc documents nest a handful of levels; isolator values a few more
MAX_KV_BYTES = 256 << 10  # annotations (or labels) of one object, as Kubernetes caps them


class InvalidValue(ManifestError, UsageError):
    """A value refused by a check here: a manifest's when it came from one, a usage
    error when it came from a flag."""


def _shown(value: str, limit: int = 48) -> str:
    """The value quoted for a one-line message, shortened when long."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def ac_name(value: str, what: str) -> str:
    """`value` if it is an AC Name, else an InvalidValue in appc's words."""
    reason = ""
    if not value:
        reason = "ACName cannot be empty"
    elif _AC_NAME_BAD_CHAR.search(value):
        reason = 'ACName must contain only lower case alphanumeric characters plus "-"'
    elif value[0] == "-" or value[-1] == "-":
        reason = "ACName must start and end with only lower case alphanumeric characters"
    elif len(value) > MAX_AC_NAME:
        reason = f"longer than {MAX_AC_NAME} characters"
    if reason:
        raise InvalidValue(f"{what}: invalid name {_shown(value)}: {reason}")
    return value


def is_ac_identifier(value: str) -> bool:
    return (
        bool(value)
        and len(value) <= MAX_AC_IDENTIFIER
        and not _ACID_BAD_CHAR.search(value)
        and value[0].isalnum()
        and value[-1].isalnum()
    )


def ac_identifier(value: str, what: str) -> str:
    if not is_ac_identifier(value):
        raise InvalidValue(
            f"{what}: {_shown(value)} is not an AC identifier",
            "lower case letters, digits and -._~/, starting and ending with a letter or digit",
        )
    return value


def no_nul(value: str, what: str) -> str:
    if "\0" in value:
        raise InvalidValue(f"{what}: contains a NUL character")
    return value


def abs_path(value: str, what: str) -> str:
    no_nul(value, what)
    if not value.startswith("/"):
        raise InvalidValue(f"{what}: {_shown(value)} is not an absolute path")
    return value


def exec_argv(argv: Iterable[str], what: str) -> tuple[str, ...]:
    """What an app executes: something, no NUL, and argv[0] absolute or a command name.

    appc 0.8.11 and rkt (since v0.16) look a name without "/" up in the app's PATH; a
    relative path ("bin/sh", "./run") depends on the working directory and is refused
    with the message rkt gave when it required absolute paths.
    """
    out = tuple(argv)
    if not out or not out[0]:
        raise InvalidValue(f"{what}: the app has nothing to execute", "use --exec")
    for i, arg in enumerate(out):
        no_nul(arg, f"{what}[{i}]")
    if "/" in out[0] and not out[0].startswith("/"):
        raise InvalidValue(
            f"{what} must be absolute path: {_shown(out[0])}",
            "or a command name without '/', looked up in the app's PATH",
        )
    return out


def is_env_name(name: str) -> bool:
    return _ENV_NAME.fullmatch(name) is not None


def env_name(name: str, what: str) -> str:
    if not is_env_name(name):
        raise InvalidValue(f"{what}: {_shown(name)} is not a valid environment variable name")
    return name


def kv_size(pairs: Iterable[tuple[str, str]], what: str) -> None:
    """Refuse annotations (or labels) whose names and values add up to more than
    MAX_KV_BYTES."""
    total = 0
    for k, v in pairs:
        total += len(k) + len(v)
        if total > MAX_KV_BYTES:
            raise InvalidValue(f"{what}: more than {MAX_KV_BYTES >> 10} KiB in all")


def _depth_exceeds(doc: Any, limit: int) -> bool:
    """Whether `doc` nests lists and objects deeper than `limit` (iteratively)."""
    todo: list[tuple[Any, int]] = [(doc, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        todo.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def load_json(data: bytes | str, what: str, *, max_bytes: int = MAX_MANIFEST_BYTES,
              max_depth: int = MAX_JSON_DEPTH) -> Any:  # fmt: skip
    """Decoded JSON, or an InvalidValue: too large, nested too deeply, not JSON."""
    if len(data) > max_bytes:
        raise InvalidValue(f"{what}: larger than {max_bytes >> 10} KiB")
    try:
        doc = json.loads(data)
    except RecursionError:
        doc = None
        deep = True
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidValue(f"{what}: not valid JSON: {e}") from None
    else:
        deep = _depth_exceeds(doc, max_depth)
    if deep:
        raise InvalidValue(f"{what}: nested more than {max_depth} levels deep")
    return doc


def read_file(path: str | Path, what: str, max_bytes: int = MAX_MANIFEST_BYTES) -> bytes:
    """A file the user named (`--pod-manifest`, `--set-env-file`), bounded: a
    InvalidValue when it cannot be read, is not a regular file or is too large."""
    import errno

    from pyrkt.linux.files import read_regular

    try:
        return read_regular(path, max_bytes)
    except OSError as e:
        if e.errno == errno.EFBIG:
            raise InvalidValue(f"{what} {path}: larger than {max_bytes >> 10} KiB") from None
        raise InvalidValue(f"cannot read {what} {path}: {e.strerror}") from None
