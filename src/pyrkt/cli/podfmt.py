"""How `rkt list` and `rkt status` print: Go's time layout, humanized ages, tab tables."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from pyrkt.errors import UsageError
from pyrkt.pod.status import PodInfo


def go_time(dt: datetime | None) -> str:
    """Go's "2006-01-02 15:04:05.999 -0700 MST" layout."""
    if dt is None:
        return ""
    ms = f"{dt.microsecond // 1000:03d}".rstrip("0")
    frac = f".{ms}" if ms else ""
    return f"{dt:%Y-%m-%d %H:%M:%S}{frac} {dt:%z} {dt.tzname() or ''}".rstrip()


def humanize(dt: datetime | None) -> str:
    if dt is None:
        return ""
    secs = int(time.time() - dt.timestamp())
    if secs < 1:
        return "now"
    for unit, size in (("year", 31536000), ("month", 2592000), ("week", 604800),
                       ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):  # fmt: skip
        if secs >= size:
            n = secs // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "now"


def tab_table(rows: list[list[str]]) -> str:
    """Go's tabwriter with minwidth 0, tabwidth 8, padding 1, padchar '\\t'."""
    if not rows:
        return ""
    ncols = max(len(r) for r in rows)
    widths = [0] * ncols
    for r in rows:
        for i, c in enumerate(r[:-1]):
            widths[i] = max(widths[i], len(c))
    cols = [((w + 1 + 7) // 8) * 8 for w in widths]
    out = []
    for r in rows:
        line = ""
        for i, c in enumerate(r):
            if i == len(r) - 1:
                line += c
            else:
                line += c + "\t" * max(1, -(-(cols[i] - len(c)) // 8))
        out.append(line)
    return "\n".join(out)


def image_label(manifest_app: dict[str, Any]) -> str:
    img = manifest_app.get("image") or {}
    name = str(img.get("name", ""))
    for lab in img.get("labels") or []:
        if isinstance(lab, dict) and lab.get("name") == "version":
            return f"{name}:{lab.get('value', '')}"
    return name


def networks_str(info: PodInfo) -> str:
    return ", ".join(str(n) for n in info.networks)


def pod_json(info: PodInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": info.uuid,
        "state": str(info.state),
        "networks": [{"netName": n.name, "ip": n.ip} for n in info.networks],
        "app_names": [a.name for a in info.apps],
    }
    if info.created:
        out["created_at"] = int(info.created.timestamp() * 1e9)
    if info.started:
        out["started_at"] = int(info.started.timestamp() * 1e9)
    if info.pid is not None:
        out["pid"] = info.pid
    if info.exit_codes or info.failure:
        out["apps"] = [
            {"name": a.name, "image_id": a.image_id, "exit_code": info.exit_codes.get(a.name)}
            for a in info.apps
        ]
    if info.failure:
        out["failure"] = info.failure
    return out


def check_format(fmt: str) -> str:
    if fmt not in ("", "json", "json-pretty"):
        raise UsageError(f"invalid --format {fmt!r}", "valid: json, json-pretty")
    return fmt
