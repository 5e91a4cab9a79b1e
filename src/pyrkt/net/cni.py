"""Running CNI plugins as the CNI spec says: ADD, DEL, CHECK on a chain of plugins.

Each plugin gets `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`,
`CNI_PATH` in its environment and its config on stdin with `name`, `cniVersion`,
`prevResult` (the previous plugin's result on ADD, the stored ADD result on DEL and
CHECK) and `runtimeConfig` (only the capabilities the plugin declares). DEL runs the
chain in reverse and tolerates a missing network namespace, so it is idempotent.

`stop_plugins(container_id)`: a runtime killed during an ADD leaves its plugin (and the
`iptables` it runs) going on alone; before a DEL undoes an ADD, they must be gone, or
they add what the DEL just removed.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyrkt import log, proc
from pyrkt.errors import RktError
from pyrkt.net.config import NetworkConfig, find_plugin


@dataclass(frozen=True)
class Attachment:
    """Where a network is attached: the CNI runtime parameters."""

    container_id: str
    netns: str
    ifname: str
    args: str = ""  # CNI_ARGS, "K=V;K2=V2"


class CniError(RktError):
    """A CNI plugin failed."""


def _version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (0,)


def normalize_result(res: dict[str, Any]) -> dict[str, Any]:
    """Bring a 0.1/0.2 result (`ip4`/`ip6`) to the 0.3+ shape (`interfaces`, `ips`)."""
    if "ips" in res or ("ip4" not in res and "ip6" not in res):
        return res
    ips: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    for key in ("ip4", "ip6"):
        block = res.get(key)
        if not isinstance(block, dict):
            continue
        ip: dict[str, Any] = {"address": block["ip"]}
        if block.get("gateway"):
            ip["gateway"] = block["gateway"]
        ips.append(ip)
        routes.extend(block.get("routes") or [])
    out = {"cniVersion": "0.3.1", "interfaces": [], "ips": ips, "routes": routes}
    if "dns" in res:
        out["dns"] = res["dns"]
    return out


def plugin_config(
    cfg: NetworkConfig,
    plugin: dict[str, Any],
    prev: dict[str, Any] | None,
    runtime: dict[str, Any],
) -> dict[str, Any]:
    conf = dict(plugin)
    conf["name"] = cfg.name
    conf["cniVersion"] = cfg.cni_version
    if prev is not None and _version_tuple(cfg.cni_version) >= (0, 3):
        conf["prevResult"] = prev
    caps = plugin.get("capabilities") or {}
    rc = {k: v for k, v in runtime.items() if caps.get(k)}
    if rc:
        conf["runtimeConfig"] = rc
    return conf


def exec_plugin(
    command: str,
    conf: dict[str, Any],
    att: Attachment,
    path: list[Path],
) -> dict[str, Any] | None:
    """Run one plugin; its parsed stdout (ADD) or None. Failures raise CniError."""
    ptype = conf["type"]
    binary = find_plugin(ptype, path)
    if binary is None:
        raise CniError(f"network {conf['name']!r}: CNI plugin {ptype!r} not found")
    env = {
        "PATH": os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin",
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": att.container_id,
        "CNI_NETNS": att.netns,
        "CNI_IFNAME": att.ifname,
        "CNI_ARGS": att.args,
        "CNI_PATH": ":".join(str(p) for p in path),
    }
    log.debug(f"CNI {command} {ptype} net={conf['name']} if={att.ifname} netns={att.netns}")
    cp = proc.run([binary], check=False, capture=True, input=json.dumps(conf), env=env)
    if cp.returncode != 0:
        msg = (cp.stderr or "").strip().splitlines()[-1:] or [f"exit status {cp.returncode}"]
        detail = msg[0]
        try:
            err = json.loads(cp.stdout)
            detail = err.get("msg", detail) + (f": {err['details']}" if err.get("details") else "")
        except (json.JSONDecodeError, AttributeError):
            pass
        raise CniError(f"network {conf['name']!r}: plugin {ptype} {command} failed: {detail}")
    if command != "ADD":
        return None
    try:
        out = json.loads(cp.stdout)
    except json.JSONDecodeError as e:
        raise CniError(f"network {conf['name']!r}: plugin {ptype} printed no JSON result") from e
    if not isinstance(out, dict):
        raise CniError(f"network {conf['name']!r}: plugin {ptype} printed a bad result")
    return normalize_result(out)


def add(
    cfg: NetworkConfig, att: Attachment, runtime: dict[str, Any], path: list[Path]
) -> dict[str, Any]:
    """ADD the whole chain; the last plugin's result."""
    prev: dict[str, Any] | None = None
    for plugin in cfg.plugins:
        res = exec_plugin("ADD", plugin_config(cfg, plugin, prev, runtime), att, path)
        prev = res if res is not None else prev
    if prev is None:
        raise CniError(f"network {cfg.name!r}: the plugin chain returned no result")
    return prev


def check(
    cfg: NetworkConfig,
    att: Attachment,
    runtime: dict[str, Any],
    result: dict[str, Any],
    path: list[Path],
) -> None:
    """CHECK the chain (CNI >= 0.4.0); raises CniError on a broken attachment."""
    if _version_tuple(cfg.cni_version) < (0, 4):
        return
    for plugin in cfg.plugins:
        exec_plugin("CHECK", plugin_config(cfg, plugin, result, runtime), att, path)


def delete(
    cfg: NetworkConfig,
    att: Attachment,
    runtime: dict[str, Any],
    result: dict[str, Any] | None,
    path: list[Path],
) -> list[str]:
    """DEL the chain in reverse; keeps going on errors and returns them."""
    errors: list[str] = []
    for plugin in reversed(cfg.plugins):
        try:
            exec_plugin("DEL", plugin_config(cfg, plugin, result, runtime), att, path)
        except RktError as e:
            errors.append(str(e))
    return errors


def _plugin_pids(container_id: str) -> list[int]:
    """Processes whose environment says they work for container_id: the plugins and
    what they run (they pass their environment on)."""
    mark = f"CNI_CONTAINERID={container_id}".encode()
    pids: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                env = f.read(1 << 16)
        except OSError:
            continue
        if mark in env.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def stop_plugins(container_id: str, timeout: float = 10.0) -> int:
    """SIGKILL what still runs for container_id (see the module docstring) and wait
    until it is gone; the number of processes killed."""
    if not container_id:
        return 0
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in _plugin_pids(container_id) if p != os.getpid()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.02)  # a zombie keeps its environ unreadable: it drops out
    if killed:
        log.debug(f"net: killed {len(killed)} CNI process(es) left running for "
                  f"{container_id}")
    return len(killed)
