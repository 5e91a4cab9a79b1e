"""`net-info.json` in the pod folder: one entry per network, rkt's field names first.

rkt's fields: netName, netConf (the config copy under POD/net/), pluginPath, ifName, ip,
args, mask, hostIP. Ours: netns, containerID, tap (VM pods), hostIfName, result (the CNI ADD result,
needed as prevResult for DEL), runtimeConfig. `rkt list`/`status` read netName and ip;
`gc` tears down from it. The file is rewritten before each ADD so a crash mid-setup still
leaves enough to DEL.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FILENAME = "net-info.json"


@dataclass(frozen=True)
class NetInfo:
    netName: str  # rkt's JSON field names
    netConf: str
    pluginPath: str
    ifName: str
    ip: str = ""
    args: str = ""
    mask: str = ""
    hostIP: str = ""
    netns: str = ""
    containerID: str = ""  # CNI_CONTAINERID used at ADD (the pod UUID)
    tap: str = ""
    hostIfName: str = ""
    result: dict[str, Any] | None = None
    runtimeConfig: dict[str, Any] = field(default_factory=dict)


def path_of(pod_dir: Path) -> Path:
    return pod_dir / FILENAME


def save(pod_dir: Path, infos: list[NetInfo]) -> None:
    tmp = pod_dir / (FILENAME + ".tmp")
    tmp.write_text(json.dumps([asdict(i) for i in infos], indent=2) + "\n")
    os.replace(tmp, path_of(pod_dir))


def load(pod_dir: Path) -> list[NetInfo]:
    """Entries of net-info.json; [] when there is none (host / none networking)."""
    p = path_of(pod_dir)
    if not p.exists():
        return []
    data = json.loads(p.read_text() or "[]")
    known = set(NetInfo.__dataclass_fields__)
    return [NetInfo(**{k: v for k, v in d.items() if k in known}) for d in data or []]
