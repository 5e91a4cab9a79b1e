"""`POD/run-options.json`: the run-time options stage0 hands to the stage1's planner.

The pod manifest is fixed at prepare time; what `rkt run` / `rkt run-prepared` decide at
run time (networks, hostname, DNS, interactive) is written here just before the stage1
runs, so that `build_plan(pod_dir)` needs nothing but the pod folder. The same values also
go to the stage1 as its contract arguments.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pyrkt.record import asdict, record

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FILE = "run-options.json"
# Flavor extension flags of `run`/`run-prepared` (`--kvm-accel=tcg`), passed to the
# stage1 `run` entrypoint as they are.
EXTENSION_PREFIXES = ("--kvm-",)


@record
class RunOptions:
    """The run-time flags of a pod, kept in its folder."""

    net: str = "default"
    hostname: str = ""
    interactive: bool = False
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_opt: tuple[str, ...] = ()
    dns_domain: str = ""
    hosts_entries: tuple[tuple[str, str], ...] = ()  # (ip, name); ("host", "") = host's
    extra: tuple[tuple[str, str], ...] = ()  # extension flags for the stage1 (--k=v)


def write(pod_dir: Path, opts: RunOptions) -> None:
    tmp = pod_dir / (FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(opts)))
    os.replace(tmp, pod_dir / FILE)


def read(pod_dir: Path) -> RunOptions:
    try:
        data: dict[str, Any] = json.loads((pod_dir / FILE).read_text())
    except FileNotFoundError:
        return RunOptions()
    return RunOptions(
        net=str(data.get("net", "default")),
        hostname=str(data.get("hostname", "")),
        interactive=bool(data.get("interactive", False)),
        dns=tuple(data.get("dns", ())),
        dns_search=tuple(data.get("dns_search", ())),
        dns_opt=tuple(data.get("dns_opt", ())),
        dns_domain=str(data.get("dns_domain", "")),
        hosts_entries=tuple((str(a), str(b)) for a, b in data.get("hosts_entries", ())),
        extra=tuple((str(a), str(b)) for a, b in data.get("extra", ())),
    )
