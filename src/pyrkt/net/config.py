"""CNI network configurations: the user's `net.d`, rkt's built-in networks, selection.

Networks come from `CONFIG_DIR/net.d/*.conf` (one plugin) and `*.conflist` (a chain), in
the system config dir then the local one (local wins on a name clash; within a dir the
first file by name wins). rkt's built-in `default` (ptp, IP masquerade, 172.16.28.0/24)
and `default-restricted` (ptp, no masquerade, 172.31.0.0/16) can be overridden by a user
file of that name. As in rkt, a pod always gets `default` or `default-restricted`: the
latter when the user named other networks but not `default` (so the host can reach it).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyrkt.errors import RktError, UsageError
from pyrkt.net.netlist import NetList

DEFAULT_CNI_VERSION = "0.4.0"
DEFAULT_CNI_PATH = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
ENV_CNI_PATH = "PYRKT_CNI_PATH"

DEFAULT_NET: dict[str, Any] = {
    "cniVersion": DEFAULT_CNI_VERSION,
    "name": "default",
    "type": "ptp",
    "ipMasq": True,
    "ipam": {
        "type": "host-local",
        "subnet": "172.16.28.0/24",
        "routes": [{"dst": "0.0.0.0/0"}],
    },
}
DEFAULT_RESTRICTED_NET: dict[str, Any] = {
    "cniVersion": DEFAULT_CNI_VERSION,
    "name": "default-restricted",
    "type": "ptp",
    "ipMasq": False,
    "ipam": {"type": "host-local", "subnet": "172.31.0.0/16"},
}


@dataclass(frozen=True)
class NetworkConfig:
    """One network: a chain of plugin configs (a `.conf` is a chain of one)."""

    name: str
    cni_version: str
    plugins: tuple[dict[str, Any], ...]
    source: str  # the file it came from, or "<built-in>"

    def to_conflist(self) -> dict[str, Any]:
        return {"cniVersion": self.cni_version, "name": self.name, "plugins": list(self.plugins)}


def cni_path() -> list[Path]:
    env = os.environ.get(ENV_CNI_PATH, "")
    if env:
        return [Path(p) for p in env.split(":") if p]
    return list(DEFAULT_CNI_PATH)


def find_plugin(plugin_type: str, path: list[Path]) -> Path | None:
    for d in path:
        p = d / plugin_type
        if p.is_file() and os.access(p, os.X_OK):
            return p
    return None


def parse_config(data: dict[str, Any], source: str) -> NetworkConfig:
    """A parsed `.conf` or `.conflist` document -> NetworkConfig; errors name `source`."""
    if not isinstance(data, dict):
        raise RktError(f"invalid network config {source}: not a JSON object")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise RktError(f"invalid network config {source}: missing \"name\"")
    version = data.get("cniVersion") or DEFAULT_CNI_VERSION
    if not isinstance(version, str):
        raise RktError(f"invalid network config {source}: \"cniVersion\" must be a string")
    if "plugins" in data:
        plugins = data["plugins"]
        if not isinstance(plugins, list) or not plugins:
            raise RktError(f"invalid network config {source}: \"plugins\" must be a non-empty list")
    else:
        plugins = [{k: v for k, v in data.items() if k not in ("name", "cniVersion")}]
    for i, p in enumerate(plugins):
        if not isinstance(p, dict) or not isinstance(p.get("type"), str) or not p["type"]:
            raise RktError(f"invalid network config {source}: plugin {i} has no \"type\"")
        ipam = p.get("ipam")
        if ipam is not None and (not isinstance(ipam, dict) or "type" not in ipam):
            raise RktError(f"invalid network config {source}: \"ipam\" has no \"type\"")
    return NetworkConfig(name, version, tuple(plugins), source)


def load_file(path: Path) -> NetworkConfig:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RktError(f"invalid network config {path}: {e}") from e
    except OSError as e:
        raise RktError(f"cannot read network config {path}: {e.strerror}") from e
    return parse_config(data, str(path))


def load_user_networks(config_dirs: list[Path]) -> dict[str, NetworkConfig]:
    """All networks in `<dir>/net.d` for dirs given lowest precedence first, by name."""
    out: dict[str, NetworkConfig] = {}
    for d in config_dirs:
        netd = d / "net.d"
        if not netd.is_dir():
            continue
        here: dict[str, NetworkConfig] = {}
        for f in sorted(netd.iterdir()):
            if f.suffix not in (".conf", ".conflist", ".json") or not f.is_file():
                continue
            cfg = load_file(f)
            here.setdefault(cfg.name, cfg)
        out.update(here)
    return out


def check_plugins(cfg: NetworkConfig, path: list[Path]) -> None:
    """Fail naming the plugin and the config file when a plugin binary is missing."""
    for p in cfg.plugins:
        types = [p["type"]]
        if isinstance(p.get("ipam"), dict):
            types.append(p["ipam"]["type"])
        for t in types:
            if find_plugin(t, path) is None:
                raise RktError(
                    f"network {cfg.name!r} ({cfg.source}): CNI plugin {t!r} not found in "
                    + ":".join(str(d) for d in path),
                    f"install it or set {ENV_CNI_PATH}",
                )


def select_networks(netlist: NetList, config_dirs: list[Path]) -> list[NetworkConfig]:
    """The networks a pod joins, in interface order (eth0 first). Empty for none/host."""
    if netlist.none or netlist.host:
        return []
    user = load_user_networks(config_dirs)
    if netlist.all:
        chosen = list(user.values())
        chosen += [user[n] for n, _ in netlist.entries if n in user and user[n] not in chosen]
    else:
        chosen = [user[n] for n in netlist.names if n in user]
    names = {c.name for c in chosen}
    if "default" not in names and "default-restricted" not in names:
        if netlist.all or netlist.specific("default"):
            chosen.append(parse_config(DEFAULT_NET, "<built-in>"))
        else:
            chosen.append(parse_config(DEFAULT_RESTRICTED_NET, "<built-in>"))
    names = {c.name for c in chosen}
    missing = [n for n in netlist.names if n != "all" and n not in names]
    if missing:
        dirs = ", ".join(str(d / "net.d") for d in config_dirs)
        raise UsageError(f"networks not found: {', '.join(missing)}", f"looked in {dirs}")
    path = cni_path()
    for c in chosen:
        check_plugins(c, path)
    return chosen


def check_networks(net: str, config_dirs: list[Path]) -> None:
    """Validate a --net value up front (stage0, before a pod exists): the same errors as
    setup would give (unknown network, bad config file, missing plugin), nothing created."""
    from pyrkt.net.netlist import parse_net_list

    select_networks(parse_net_list(net), config_dirs)
