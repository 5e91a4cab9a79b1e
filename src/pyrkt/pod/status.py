"""What `rkt list` and `rkt status` report about a pod, read from its folder.

created = when the pod manifest was written (prepare), started = when the stage1 wrote
`POD/pid`, finished = when the last app status file was written (the status files are
the pod's to write: read through `contract.read_exit_statuses`, bounded, no symlinks);
failure = the stage1's one-line record of why apps have no exit code; networks from
`POD/net-info.json` (written by the network code: a list of objects with the network's
name and the pod's address in it).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pyrkt.pod.pods import Pod, State
from pyrkt.stage1 import contract


@dataclass(frozen=True)
class Network:
    name: str
    ip: str

    def __str__(self) -> str:
        return f"{self.name}:ip4={self.ip}"


@dataclass(frozen=True)
class AppInfo:
    name: str
    image_name: str
    image_id: str


@dataclass(frozen=True)
class PodInfo:
    uuid: str
    state: State
    apps: tuple[AppInfo, ...] = ()
    created: datetime | None = None
    started: datetime | None = None
    finished: datetime | None = None
    pid: int | None = None
    networks: tuple[Network, ...] = ()
    exit_codes: dict[str, int] = field(default_factory=dict)
    # Why apps without an exit code have none (the stage1's record, e.g. the VM killed).
    failure: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(os.stat(path).st_mtime).astimezone()
    except OSError:
        return None


def read_networks(pod_dir: Path) -> tuple[Network, ...]:
    try:
        data = json.loads(contract.net_info(pod_dir).read_text())
    except (OSError, ValueError):
        return ()
    if isinstance(data, dict):
        data = data.get("networks", [data])
    out = []
    for n in data if isinstance(data, list) else []:
        if not isinstance(n, dict):
            continue
        name = str(n.get("netName") or n.get("name") or "")
        ip = n.get("ip") or n.get("ip4") or ""
        if isinstance(ip, dict):
            ip = ip.get("ip", "")
        ip = str(ip).split("/")[0]
        if name:
            out.append(Network(name, ip))
    return tuple(out)


def read_pid(pod_dir: Path) -> int | None:
    try:
        return int(contract.pid_file(pod_dir).read_text().strip())
    except (OSError, ValueError):
        return None


def pod_info(pod: Pod) -> PodInfo:
    from pyrkt.stage0.mounts import exit_statuses

    state = pod.state()
    d = pod.path
    manifest: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        manifest = json.loads(contract.pod_manifest(d).read_text())
    apps = []
    for a in manifest.get("apps") or []:
        if isinstance(a, dict):
            img = a.get("image") or {}
            apps.append(AppInfo(str(a.get("name", "")), str(img.get("name", "")),
                                str(img.get("id", ""))))  # fmt: skip
    codes: dict[str, int] = {}
    finished = None
    failure = None
    if state in (State.EXITED, State.EXITED_GARBAGE, State.DELETING, State.GARBAGE):
        statuses = exit_statuses(d, sorted({a.name for a in apps}))
        codes = {a: s.code for a, s in statuses.items()}
        if statuses:
            finished = datetime.fromtimestamp(
                max(s.mtime for s in statuses.values())).astimezone()
        failure = contract.read_failure(d)
    return PodInfo(
        uuid=pod.uuid,
        state=state,
        apps=tuple(apps),
        created=_mtime(contract.pod_manifest(d)) if manifest else None,
        started=_mtime(contract.pid_file(d)),
        finished=finished,
        pid=read_pid(d),
        networks=read_networks(d),
        exit_codes=codes,
        failure=failure,
        manifest=manifest,
    )
