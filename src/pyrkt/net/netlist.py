"""rkt's `--net` list: `default`, `none`, `host`, `all`, `NAME[:CNI_ARGS]`, comma-separated.

`--net=net1,net2:IP=10.1.2.3;K=V` names two networks, the second with CNI_ARGS
`IP=10.1.2.3;K=V`. `none` and `host` stand alone; `all` and `host` take no arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyrkt.errors import UsageError

SPECIAL = ("none", "host", "all")


@dataclass(frozen=True)
class NetList:
    """The parsed --net value: (name, CNI_ARGS) pairs in the order given."""

    entries: tuple[tuple[str, str], ...] = (("default", ""),)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.entries)

    @property
    def none(self) -> bool:
        return self.names == ("none",)

    @property
    def host(self) -> bool:
        return self.names == ("host",)

    @property
    def all(self) -> bool:
        return "all" in self.names

    def specific(self, name: str) -> bool:
        return name in self.names

    def args(self, name: str) -> str:
        return dict(self.entries).get(name, "")

    def __str__(self) -> str:
        return ",".join(f"{n}:{a}" if a else n for n, a in self.entries)


def parse_net_list(value: str) -> NetList:
    """Parse a --net value with rkt's rules; an empty value means `default`."""
    if value.strip() == "":
        return NetList()
    entries: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in value.split(","):
        parts = item.split(":")
        name = parts[0].strip()
        if not name:
            raise UsageError(f"invalid --net={value!r}: netname must not be empty")
        if name in seen:
            raise UsageError(f"invalid --net={value!r}: found duplicate netname {name!r}")
        seen.add(name)
        if len(parts) > 2:
            raise UsageError(
                f"invalid --net={value!r}: network {name!r} provided with invalid "
                f"arguments: {parts[1:]}"
            )
        args = parts[1] if len(parts) == 2 else ""
        if args and name in ("all", "host", "none"):
            raise UsageError(
                f"invalid --net={value!r}: arguments are not supported by special "
                f"netname {name!r}"
            )
        entries.append((name, args))
    names = [n for n, _ in entries]
    for special in ("none", "host"):
        if special in names and len(names) > 1:
            raise UsageError(
                f"invalid --net={value!r}: {special!r} cannot be combined with other networks"
            )
    return NetList(tuple(entries))
