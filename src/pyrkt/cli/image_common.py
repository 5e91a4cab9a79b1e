"""Shared by the image verbs (`fetch`, `image ...`, `trust`): cobra-style flag parsing
and rkt's human formats for sizes and times, and a download progress display."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from pyrkt.cli.common import parse_bool
from pyrkt.errors import UsageError

FlagSpec = Mapping[str, type]  # flag name (without --) -> bool or str


def parse_flags(
    args: list[str], spec: FlagSpec, defaults: Mapping[str, object] | None = None
) -> tuple[dict[str, object], list[str]]:
    """`--name=value`, `--name value` (str flags), `--name[=bool]` (bool flags)."""
    values: dict[str, object] = dict(defaults or {})
    pos: list[str] = []
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            pos.extend(args[i + 1 :])
            break
        if tok in ("-h", "--help"):
            values["help"] = True
        elif tok.startswith("--"):
            name, eq, val = tok[2:].partition("=")
            kind = spec.get(name)
            if kind is None:
                raise UsageError(f"unknown flag: --{name}")
            if kind is bool:
                values[name] = parse_bool(f"--{name}", val) if eq else True
            else:
                if not eq:
                    if i + 1 >= len(args):
                        raise UsageError(f"flag needs an argument: --{name}")
                    i += 1
                    val = args[i]
                values[name] = val
        else:
            pos.append(tok)
        i += 1
    return values, pos


def ibytes(n: int) -> str:
    """go-humanize IBytes: `512 B`, `3.2 MiB`, `79 MiB`."""
    if n < 1024:
        return f"{n} B"
    units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    v = float(n)
    for unit in units:
        v /= 1024
        if v < 1024 or unit == units[-1]:
            return f"{v:.1f} {unit}" if v < 10 else f"{v:.0f} {unit}"
    raise AssertionError("unreachable")


def reltime(t: float, now: float | None = None) -> str:
    """go-humanize Time: `now`, `3 minutes ago`, `1 day ago`..."""
    d = (time.time() if now is None else now) - t
    suffix = "ago" if d >= 0 else "from now"
    d = abs(d)
    steps = [
        (1, None, "now"),
        (2, 1, "1 second"),
        (60, 1, "seconds"),
        (120, 60, "1 minute"),
        (3600, 60, "minutes"),
        (7200, 3600, "1 hour"),
        (86400, 3600, "hours"),
        (2 * 86400, 86400, "1 day"),
        (7 * 86400, 86400, "days"),
        (14 * 86400, 7 * 86400, "1 week"),
        (30 * 86400, 7 * 86400, "weeks"),
        (60 * 86400, 30 * 86400, "1 month"),
        (365 * 86400, 30 * 86400, "months"),
        (2 * 365 * 86400, 365 * 86400, "1 year"),
    ]
    for limit, unit, text in steps:
        if d < limit:
            if unit is None:
                return text
            if text[0].isdigit():
                return f"{text} {suffix}"
            return f"{int(d // unit)} {text} {suffix}"
    return f"{int(d // (365 * 86400))} years {suffix}"


def fulltime(t: float) -> str:
    """Go's `2006-01-02 15:04:05.999 -0700 MST` layout, in local time."""
    dt = datetime.fromtimestamp(t).astimezone()
    ms = f"{dt.microsecond // 1000:03d}".rstrip("0")
    frac = f".{ms}" if ms else ""
    return f"{dt:%Y-%m-%d %H:%M:%S}{frac} {dt:%z} {dt.tzname()}"


def tabwrite(rows: list[list[str]]) -> str:
    """Go's tabwriter (minwidth 0, tabwidth 8, padding 1, padchar '\\t'), as rkt used."""
    if not rows:
        return ""
    ncol = max(len(r) for r in rows)
    widths = [0] * ncol
    for r in rows:
        for i, cell in enumerate(r[:-1]):
            widths[i] = max(widths[i], len(cell) + 1)
    widths = [(w + 7) // 8 * 8 for w in widths]
    out = []
    for r in rows:
        line = ""
        for i, cell in enumerate(r):
            if i < len(r) - 1:
                line += cell + "\t" * max(1, (widths[i] - len(cell) + 7) // 8)
            else:
                line += cell
        out.append(line)
    return "\n".join(out) + "\n"


def progress_printer() -> Callable[[str, int, int], None]:
    """A download progress callback: a rich bar on a terminal, plain lines otherwise."""
    lock = threading.Lock()
    if sys.stderr.isatty():
        from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TransferSpeedColumn

        bar = Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), transient=True,
        )  # fmt: skip
        tasks: dict[str, TaskID] = {}
        finished: set[str] = set()

        def tty(what: str, done: int, total: int) -> None:
            with lock:
                if what in finished:
                    return
                if what not in tasks:
                    if not tasks:
                        bar.start()
                    tasks[what] = bar.add_task(f"Downloading {what[:24]}", total=total or None)
                bar.update(tasks[what], completed=done)
                if total and done >= total:
                    bar.remove_task(tasks.pop(what))
                    finished.add(what)
                    if not tasks:
                        bar.stop()

        return tty
    started: set[str] = set()
    ended: set[str] = set()

    def plain(what: str, done: int, total: int) -> None:
        with lock:
            if what not in started:
                started.add(what)
                size = f" ({ibytes(total)})" if total else ""
                print(f"Downloading {what}{size}", file=sys.stderr, flush=True)
            if total and done >= total and what not in ended:
                ended.add(what)
                print(f"Downloaded {what}", file=sys.stderr, flush=True)

    return plain
