"""rkt's human formats in the image verbs: sizes, relative times, tab-aligned tables."""

from __future__ import annotations

import pytest

from pyrkt.cli.image_common import ibytes, parse_flags, reltime, tabwrite
from pyrkt.errors import UsageError


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (3_355_443, "3.2 MiB"),
     (82_854_982, "79 MiB"), (5 * 1024**3, "5.0 GiB")],
)  # fmt: skip
def test_ibytes(n: int, text: str) -> None:
    assert ibytes(n) == text


@pytest.mark.parametrize(
    ("ago", "text"),
    [(0.2, "now"), (1.5, "1 second ago"), (42, "42 seconds ago"), (90, "1 minute ago"),
     (55 * 60, "55 minutes ago"), (3 * 3600, "3 hours ago"), (86400 * 1.5, "1 day ago"),
     (6 * 86400, "6 days ago"), (10 * 86400, "1 week ago")],
)  # fmt: skip
def test_reltime(ago: float, text: str) -> None:
    assert reltime(1_000_000 - ago, now=1_000_000) == text


def test_tabwrite_aligns_on_tab_stops() -> None:
    out = tabwrite([["ID", "NAME"], ["sha512-3ecb8692d0a7", "example.com/bb:1.0"]])
    assert out == "ID\t\t\tNAME\nsha512-3ecb8692d0a7\texample.com/bb:1.0\n"


def test_parse_flags() -> None:
    opts, pos = parse_flags(["--full", "a", "--pull-policy", "never", "--x=false", "b"],
                            {"full": bool, "pull-policy": str, "x": bool})  # fmt: skip
    assert opts == {"full": True, "pull-policy": "never", "x": False} and pos == ["a", "b"]
    with pytest.raises(UsageError, match="unknown flag: --nope"):
        parse_flags(["--nope"], {})
    with pytest.raises(UsageError, match="needs an argument"):
        parse_flags(["--pull-policy"], {"pull-policy": str})
