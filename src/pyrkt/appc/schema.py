"""What the appc image and pod manifests share: their error, the value types both carry,
and the reader that turns a decoded JSON object into them.

`JsonObject(raw, path)` is a JSON object being read: typed getters (`str_`, `int_`,
`bool_`, `opt_bool`, `opt_int`, `list_`, `strs`, `ints`, `str_map`, `object_`, `value`)
that name the key path (`apps[0].app.ports[1].port`) in their errors, and `done()`,
which rejects any key no getter asked for (unless the object is read leniently, as an
image's `app` section is when a pod is prepared). A missing key, or one set to null,
gives the getter's default; without a default it is an error.

Every dataclass here has a docstring: without one, `dataclasses` computes one through
`inspect.signature` at import time, which `rkt run` would pay for.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyrkt.errors import RktError
from pyrkt.record import record

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

AC_VERSION = "0.8.11"


class ManifestError(RktError):
    """A pod or image manifest that does not follow the appc schema."""


@record
class NameValue:
    """A name/value pair (labels, annotations, environment)."""

    name: str
    value: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "value": self.value}


@record
class Isolator:
    """An appc isolator: its name and its value as in the manifest."""

    name: str
    value: Any  # the isolator's JSON value

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value}


@record
class MountPoint:
    """A path in the image where a volume may be mounted."""

    name: str
    path: str
    read_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "readOnly": self.read_only}


@record
class Port:
    """A port the app listens on."""

    name: str
    protocol: str
    port: int
    count: int = 1
    socket_activated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "protocol": self.protocol,
            "port": self.port,
            "count": self.count,
            "socketActivated": self.socket_activated,
        }


def join(path: str, key: str) -> str:
    """The key path of `key` inside the object at `path` ("" is the document)."""
    return f"{path}.{key}" if path else key


class JsonObject:
    """A JSON object being read; remembers its path and which keys were asked for.

    `prefix` starts every message (`"image manifest: "`); `unknown` is the message for
    a key nobody asked for, formatted with the key's path.
    """

    def __init__(
        self,
        raw: object,
        path: str,
        *,
        strict: bool = True,
        prefix: str = "",
        unknown: str = "{path}: unknown key",
    ) -> None:
        if not isinstance(raw, Mapping):
            raise ManifestError(f"{prefix}{path or 'manifest'}: expected a JSON object")
        self.raw: Mapping[str, Any] = raw
        self.path = path
        self.strict = strict
        self.prefix = prefix
        self.unknown = unknown
        self.seen: set[str] = set()

    def error(self, message: str) -> ManifestError:
        """A ManifestError with this document's prefix."""
        return ManifestError(self.prefix + message)

    def child(self, raw: object, path: str, *, strict: bool | None = None) -> JsonObject:
        """An object nested in this one, read the same way (and as strictly, by default)."""
        return JsonObject(
            raw,
            path,
            strict=self.strict if strict is None else strict,
            prefix=self.prefix,
            unknown=self.unknown,
        )

    def p(self, key: str) -> str:
        return join(self.path, key)

    def value(self, key: str) -> Any:
        """The raw value at key (None when absent), of any type."""
        self.seen.add(key)
        return self.raw.get(key)

    def _required(self, key: str, default: object) -> Any:
        v = self.value(key)
        if v is None:
            v = default
        if v is None:
            raise self.error(f"missing required key {self.p(key)!r}")
        return v

    def str_(self, key: str, default: str | None = None) -> str:
        v = self._required(key, default)
        if not isinstance(v, str):
            raise self.error(f"{self.p(key)}: expected a string")
        return v

    def int_(self, key: str, default: int | None = None) -> int:
        v = self._required(key, default)
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.error(f"{self.p(key)}: expected an integer")
        return v

    def bool_(self, key: str, default: bool = False) -> bool:
        v = self._required(key, default)
        if not isinstance(v, bool):
            raise self.error(f"{self.p(key)}: expected true or false")
        return v

    def opt_int(self, key: str) -> int | None:
        return None if self.value(key) is None else self.int_(key)

    def opt_bool(self, key: str) -> bool | None:
        return None if self.value(key) is None else self.bool_(key)

    def object_(self, key: str) -> Mapping[str, Any] | None:
        """The JSON object at key, or None when absent."""
        v = self.value(key)
        if v is not None and not isinstance(v, Mapping):
            raise self.error(f"{self.p(key)}: expected an object")
        return v

    def list_(self, key: str) -> list[tuple[str, Any]]:
        """(path, item) for each item of the list at key; [] when absent."""
        v = self.value(key)
        if v is None:
            return []
        if not isinstance(v, list):
            raise self.error(f"{self.p(key)}: expected a list")
        return [(f"{self.p(key)}[{i}]", x) for i, x in enumerate(v)]

    def strs(self, key: str) -> tuple[str, ...]:
        out = []
        for p, x in self.list_(key):
            if not isinstance(x, str):
                raise self.error(f"{p}: expected a string")
            out.append(x)
        return tuple(out)

    def ints(self, key: str) -> tuple[int, ...]:
        out = []
        for p, x in self.list_(key):
            if not isinstance(x, int) or isinstance(x, bool):
                raise self.error(f"{p}: expected an integer")
            out.append(x)
        return tuple(out)

    def str_map(self, key: str) -> tuple[tuple[str, str], ...]:
        """An object of strings, as sorted (key, value) pairs; () when absent."""
        v = self.value(key)
        if v is None:
            return ()
        if not isinstance(v, Mapping) or not all(
            isinstance(k, str) and isinstance(x, str) for k, x in v.items()
        ):
            raise self.error(f"{self.p(key)}: expected an object of strings")
        return tuple(sorted(v.items()))

    def done(self) -> None:
        """Reject the first key that no getter asked for (when strict)."""
        if not self.strict:
            return
        for k in self.raw:
            if k not in self.seen:
                raise self.error(self.unknown.format(path=self.p(str(k))))
