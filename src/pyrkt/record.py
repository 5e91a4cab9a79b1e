"""`@record`: frozen dataclasses that cost nothing to define, for `rkt run`'s hot path.

`@dataclass` compiles six methods per class with `exec` at import time (0.5-1.5 ms per
class on the shared 2-core machines) and `import dataclasses` pulls in `inspect`, `ast`,
`dis` and `tokenize` (~10 ms): about a third of `rkt run`'s start-up was spent there.
A record is declared the same way (annotated fields, plain defaults, `field(
default_factory=...)`) and behaves the same for the code here: keyword or positional
`__init__`, `__repr__`, `__eq__`, `__hash__` (frozen), assignments refused (frozen),
`__match_args__`; `replace()` and `asdict()` stand in for the `dataclasses` functions.
The methods are shared, generic ones, so defining a record is a dict lookup per field.
Type checkers see a dataclass (PEP 681 `dataclass_transform`).
"""

from __future__ import annotations

# not `from typing import ...`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:

    def dataclass_transform(**_kw: object) -> object:
        return lambda f: f


class FrozenRecordError(AttributeError):
    """An assignment to a field of a frozen record."""


class _Factory:
    __slots__ = ("factory",)

    def __init__(self, factory: Callable[[], object]) -> None:
        self.factory = factory


def field(*, default_factory: Callable[[], T]) -> T:
    """A field whose default is made per instance (`dataclasses.field(default_factory=)`)."""
    return _Factory(default_factory)  # type: ignore[return-value]


_MISSING = object()


def _fields_of(cls: type) -> tuple[tuple[str, ...], dict[str, object]]:
    names: list[str] = []
    defaults: dict[str, object] = {}
    for base in reversed(cls.__mro__[1:]):
        inherited = base.__dict__.get("__record_fields__")
        if inherited is not None:
            names += [n for n in inherited if n not in names]
            defaults.update(base.__dict__["__record_defaults__"])
    annotations: dict[str, object] = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
    for name, ann in annotations.items():
        if isinstance(ann, str) and ann.startswith(("ClassVar", "typing.ClassVar")):
            continue
        if name not in names:
            names.append(name)
        value = cls.__dict__.get(name, _MISSING)
        if isinstance(value, _Factory):
            defaults[name] = value
            delattr(cls, name)
        elif value is not _MISSING:
            if isinstance(value, (list, dict, set)):
                raise ValueError(f"mutable default {type(value).__name__} for field {name}: "
                                 "use field(default_factory=...)")
            defaults[name] = value
    seen_default = False
    for name in names:
        if name in defaults:
            seen_default = True
        elif seen_default:
            raise TypeError(f"non-default field {name!r} follows a default field")
    return tuple(names), defaults


def _init(self: object, *args: object, **kwargs: object) -> None:
    cls = type(self)
    names: tuple[str, ...] = cls.__record_fields__  # type: ignore[attr-defined]
    defaults: dict[str, object] = cls.__record_defaults__  # type: ignore[attr-defined]
    if len(args) > len(names):
        raise TypeError(f"{cls.__name__}() takes {len(names)} positional arguments "
                        f"but {len(args)} were given")
    setter = object.__setattr__
    for i, name in enumerate(names):
        if i < len(args):
            if name in kwargs:
                raise TypeError(f"{cls.__name__}() got multiple values for argument {name!r}")
            value = args[i]
        else:
            value = kwargs.pop(name, _MISSING)
            if value is _MISSING:
                value = defaults.get(name, _MISSING)
                if value is _MISSING:
                    raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
                if isinstance(value, _Factory):
                    value = value.factory()
        setter(self, name, value)
    if len(args) < len(names) and kwargs:
        raise TypeError(f"{cls.__name__}() got an unexpected keyword argument "
                        f"{next(iter(kwargs))!r}")
    post = getattr(self, "__post_init__", None)
    if post is not None:
        post()


def _values(self: object) -> tuple[object, ...]:
    return tuple(getattr(self, n) for n in type(self).__record_fields__)  # type: ignore[attr-defined]


def _repr(self: object) -> str:
    cls = type(self)
    inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in cls.__record_fields__)  # type: ignore[attr-defined]
    return f"{cls.__qualname__}({inner})"


def _eq(self: object, other: object) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented  # type: ignore[no-any-return]
    return _values(self) == _values(other)


def _hash(self: object) -> int:
    return hash(_values(self))


def _frozen_setattr(self: object, name: str, _value: object) -> None:
    raise FrozenRecordError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: object, name: str) -> None:
    raise FrozenRecordError(f"cannot delete field {name!r}")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[T] | None = None, /, *, frozen: bool = True) -> Any:
    """Class decorator: `@record` (frozen) or `@record(frozen=False)`."""

    def wrap(c: type[T]) -> type[T]:
        names, defaults = _fields_of(c)
        own = c.__dict__
        attrs: dict[str, object] = {
            "__record_fields__": names,
            "__record_defaults__": defaults,
            "__match_args__": names,
            "__init__": _init,
        }
        if "__repr__" not in own:
            attrs["__repr__"] = _repr
        if "__eq__" not in own:
            attrs["__eq__"] = _eq
            attrs["__hash__"] = _hash if frozen else None
        if frozen:
            attrs["__setattr__"] = _frozen_setattr
            attrs["__delattr__"] = _frozen_delattr
        for k, v in attrs.items():
            setattr(c, k, v)
        return c

    return wrap if cls is None else wrap(cls)


def is_record(obj: object) -> bool:
    return hasattr(type(obj), "__record_fields__")


def fields(obj: object) -> tuple[str, ...]:
    """The field names of a record (class or instance), in order."""
    cls = obj if isinstance(obj, type) else type(obj)
    names: tuple[str, ...] = cls.__record_fields__  # type: ignore[attr-defined]
    return names


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of a record with some fields changed (a dataclass: `dataclasses.replace`)."""
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    names = fields(obj)
    unknown = set(changes) - set(names)
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {sorted(unknown)[0]!r}")
    values = {n: changes[n] if n in changes else getattr(obj, n) for n in names}
    return type(obj)(**values)


def asdict(obj: object) -> dict[str, Any]:
    """A record as a dict, nested records, lists, tuples and dicts converted too."""
    out: dict[str, Any] = {n: _plain(getattr(obj, n)) for n in fields(obj)}
    return out


def _plain(v: object) -> Any:
    if is_record(v) and not isinstance(v, type):
        return asdict(v)
    if isinstance(v, (list, tuple)):
        return type(v)(_plain(x) for x in v)
    if isinstance(v, dict):
        return {_plain(k): _plain(x) for k, x in v.items()}
    return v
