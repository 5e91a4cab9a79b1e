"""`pyrkt.record`: the frozen records that replace `@dataclass` on `rkt run`'s path."""

from __future__ import annotations

import copy

import pytest

from pyrkt.record import FrozenRecordError, asdict, field, fields, record, replace


@record
class Inner:
    """A nested record."""

    x: int
    tags: tuple[str, ...] = ()


@record
class Outer:
    """Fields with a plain default and with a factory."""

    name: str
    inner: Inner
    count: int = 0
    env: dict[str, str] = field(default_factory=dict)


@record(frozen=False)
class Mutable:
    """A record whose fields can be assigned."""

    items: list[str] = field(default_factory=list)


def test_init_defaults_and_factories() -> None:
    a = Outer("a", Inner(1))
    b = Outer(name="b", inner=Inner(x=2, tags=("t",)), count=3, env={"K": "V"})
    assert (a.name, a.inner.x, a.count, a.env) == ("a", 1, 0, {})
    assert (b.count, b.env, b.inner.tags) == (3, {"K": "V"}, ("t",))
    assert Outer("c", Inner(1)).env is not a.env  # one dict per instance
    assert fields(Outer) == ("name", "inner", "count", "env")


def test_init_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="missing required argument: 'inner'"):
        Outer("a")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        Outer("a", Inner(1), nope=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values"):
        Outer("a", Inner(1), name="b")  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        Inner(1, (), 3)  # type: ignore[call-arg]


def test_frozen_eq_hash_repr() -> None:
    a = Outer("a", Inner(1, ("t",)))
    with pytest.raises(FrozenRecordError):
        a.name = "b"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del a.count
    assert a == Outer("a", Inner(1, ("t",)))
    assert a != Outer("a", Inner(2, ("t",)))
    assert Inner(1) != Outer("x", Inner(1))  # type: ignore[comparison-overlap]
    assert hash(Inner(1, ("t",))) == hash(Inner(1, ("t",)))
    assert {Inner(1), Inner(1), Inner(2)} == {Inner(1), Inner(2)}
    assert repr(Inner(1)) == "Inner(x=1, tags=())"


def test_mutable_record() -> None:
    m = Mutable()
    m.items.append("x")
    m.items = ["y"]
    assert m == Mutable(["y"])
    with pytest.raises(TypeError):
        hash(m)


def test_replace_asdict_copy() -> None:
    a = Outer("a", Inner(1, ("t",)), env={"K": "V"})
    b = replace(a, count=5)
    assert (b.count, b.name, b.env) == (5, "a", {"K": "V"}) and a.count == 0
    with pytest.raises(TypeError, match="no field 'nope'"):
        replace(a, nope=1)
    assert asdict(a) == {"name": "a", "inner": {"x": 1, "tags": ("t",)}, "count": 0,
                         "env": {"K": "V"}}
    assert copy.deepcopy(a) == a and copy.copy(a) == a


def test_definition_errors() -> None:
    with pytest.raises(ValueError, match="mutable default"):

        @record
        class Bad:
            """A list as a shared default."""

            items: list[str] = []

    with pytest.raises(TypeError, match="non-default field 'b'"):

        @record
        class Order:
            """A required field after a default one."""

            a: int = 0
            b: int  # type: ignore[misc]


def test_match_args() -> None:
    match Inner(3, ("u",)):
        case Inner(x, tags):
            assert (x, tags) == (3, ("u",))
        case _:
            pytest.fail("no match")
