"""Setting up and tearing down a pod's networks (see `pyrkt.net` for the overview)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyrkt import log
from pyrkt.errors import RktError
from pyrkt.net import cni, iptables, netinfo
from pyrkt.net.config import NetworkConfig, cni_path, parse_config, select_networks
from pyrkt.net.dns import CniDns
from pyrkt.net.netlist import parse_net_list
from pyrkt.net.netns import NETNS_DIR, create_netns, delete_netns, netns_alive, netns_name
from pyrkt.net.tap import IfaceState, attach_tap, detach_tap, read_iface
from pyrkt.stage1.plan import PortPlan

NETNS_FILE = "netns"  # POD/netns: the path of the pod's namespace, as in rkt
NET_DIR = "net"  # POD/net/: the effective config of each network, removed once torn down
PORTMAP = {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}


@dataclass(frozen=True)
class PodInterface:
    """One network the pod joined: CNI's interface `ifname` in the pod namespace."""

    net_name: str
    ifname: str  # eth0, eth1, ...
    ip: str  # the pod's address on this network ("" if CNI gave none)
    prefix_len: int
    gateway: str  # "" if none
    host_ifname: str  # the host end (ptp/bridge veth), "" if none
    tap: str  # VM pods: the tap QEMU opens inside the namespace; "" otherwise
    state: IfaceState  # MAC (give it to the guest NIC), MTU, addresses, routes

    @property
    def mac(self) -> str:
        return self.state.mac

    @property
    def mtu(self) -> int:
        return self.state.mtu


@dataclass(frozen=True)
class PodNetwork:
    mode: str  # "host", "none" or "cni"
    netns: Path | None  # None for --net=host
    interfaces: tuple[PodInterface, ...] = ()
    dns: tuple[CniDns, ...] = ()

    @property
    def first_ip(self) -> str:
        return next((i.ip for i in self.interfaces if i.ip), "")


def port_runtime_config(ports: Sequence[PortPlan]) -> dict[str, Any]:
    maps: list[dict[str, Any]] = []
    for p in ports:
        m: dict[str, Any] = {
            "hostPort": p.host_port,
            "containerPort": p.pod_port,
            "protocol": p.protocol,
        }
        if p.host_ip:
            m["hostIP"] = p.host_ip
        maps.append(m)
    return {"portMappings": maps} if maps else {}


def _with_portmap(cfg: NetworkConfig) -> NetworkConfig:
    if any((p.get("capabilities") or {}).get("portMappings") for p in cfg.plugins):
        return cfg
    return NetworkConfig(cfg.name, cfg.cni_version, (*cfg.plugins, dict(PORTMAP)), cfg.source)


def _summarize(result: dict[str, Any], ifname: str) -> tuple[str, int, str, str]:
    """(ip, prefix, gateway, host ifname) for `ifname` from a CNI result."""
    ifaces = result.get("interfaces") or []
    # The host end of the pod's link: the last host-side interface (bridge comes first).
    host_ifs = [i.get("name", "") for i in ifaces if not i.get("sandbox")]
    host_if = host_ifs[-1] if host_ifs else ""
    chosen: dict[str, Any] | None = None
    for ip in result.get("ips") or []:
        idx = ip.get("interface")
        if isinstance(idx, int) and 0 <= idx < len(ifaces) and ifaces[idx].get("name") != ifname:
            continue
        if ":" in ip.get("address", ""):
            chosen = chosen or ip
            continue
        chosen = ip
        break
    if chosen is None:
        return "", 0, "", host_if
    iface = ipaddress.ip_interface(chosen["address"])
    return str(iface.ip), iface.network.prefixlen, chosen.get("gateway", ""), host_if


def setup_pod_network(
    pod_dir: Path,
    uuid: str,
    net: str,
    *,
    config_dirs: list[Path],
    ports: Sequence[PortPlan] = (),
    for_vm: bool = False,
) -> PodNetwork:
    """Create the pod's namespace and join the networks `net` names (rkt's --net value).

    Validates everything first (unknown network, bad config, missing plugin: RktError
    and nothing created). On a failure midway, tears down what was set up and raises.
    """
    pod_dir = pod_dir.absolute()
    netlist = parse_net_list(net)
    if netlist.host:
        if for_vm:
            raise RktError(
                "--net=host is not supported by the kvm stage1",
                "a VM has its own kernel and network stack: use --net=default and --port",
            )
        return PodNetwork("host", None)
    networks = select_networks(netlist, config_dirs)
    if ports and not networks:
        raise RktError("--port needs a network: it cannot be used with --net=none")
    path = cni_path()
    # Recorded before it exists, so a SIGKILL right after creation cannot leak it.
    (pod_dir / NETNS_FILE).write_text(str(NETNS_DIR / netns_name(uuid)))
    ns = create_netns(netns_name(uuid))
    if not networks:
        return PodNetwork("none", ns)
    runtime = port_runtime_config(ports)
    infos: list[netinfo.NetInfo] = []
    try:
        (pod_dir / NET_DIR).mkdir(exist_ok=True)
        ifaces: list[PodInterface] = []
        for i, cfg in enumerate(networks):
            if runtime and i == 0:
                cfg = _with_portmap(cfg)
            rc = runtime if i == 0 else {}
            ifname = f"eth{i}"
            conf_copy = pod_dir / NET_DIR / f"{i:02d}-{cfg.name}.conflist"
            conf_copy.write_text(json.dumps(cfg.to_conflist(), indent=2) + "\n")
            args = netlist.args(cfg.name)
            info = netinfo.NetInfo(
                cfg.name, str(conf_copy), ":".join(map(str, path)), ifname,
                args=args, netns=str(ns), containerID=uuid, runtimeConfig=rc,
            )
            infos.append(info)
            netinfo.save(pod_dir, infos)
            log.debug(f"net: adding network {cfg.name!r} ({cfg.source}) as {ifname}")
            att = cni.Attachment(uuid, str(ns), ifname, args)
            result = cni.add(cfg, att, rc, path)
            ip, plen, gw, host_if = _summarize(result, ifname)
            mask = str(ipaddress.ip_network(f"{ip}/{plen}", strict=False).netmask) if ip else ""
            tap = ""
            if for_vm:
                tap = f"tap{i}"
                attach_tap(ns, ifname, tap)
            info = netinfo.NetInfo(
                cfg.name, str(conf_copy), info.pluginPath, ifname, ip, args, mask, gw,
                str(ns), uuid, tap, host_if, result, rc,
            )
            infos[-1] = info
            netinfo.save(pod_dir, infos)
            ifaces.append(PodInterface(cfg.name, ifname, ip, plen, gw, host_if, tap,
                                       read_iface(ns, ifname)))
        dns = tuple(CniDns.from_result(i.result or {}) for i in infos)
        return PodNetwork("cni", ns, tuple(ifaces), dns)
    except BaseException:
        teardown_pod_network(pod_dir)
        raise


def pod_netns(pod_dir: Path) -> Path | None:
    """The pod's namespace path, as recorded at setup; None if it has none."""
    f = pod_dir / NETNS_FILE
    with contextlib.suppress(OSError):
        text = f.read_text().strip()
        if text:
            return Path(text)
    return None


def teardown_pod_network(pod_dir: Path) -> None:
    """Release everything setup created: CNI DEL per network (IPAM leases, veths,
    iptables rules), taps, the namespace. Idempotent; works after a SIGKILL."""
    try:
        infos = netinfo.load(pod_dir)
    except (OSError, ValueError, TypeError) as e:
        log.warn(f"net: unreadable {netinfo.path_of(pod_dir)}: {e}")
        infos = []
    ns = pod_netns(pod_dir) or next((Path(i.netns) for i in infos if i.netns), None)
    # A pod killed with its mount namespace (where the namespace was bind-mounted) has
    # lost its namespace: DEL gets no CNI_NETNS, so plugins release what they can
    # without it (IPAM leases), and `iptables.sweep` removes their rules and chains.
    alive = ns is not None and netns_alive(ns)
    failed = False
    for cid in {i.containerID for i in infos if i.containerID and i.result is None}:
        cni.stop_plugins(cid)  # an ADD cut short by a kill may still be running
    for info in reversed(infos):
        # The pod folder moves between states (run -> exited-garbage -> garbage):
        # find the config copy in the folder as it is now.
        conf = pod_dir / NET_DIR / Path(info.netConf).name
        if not conf.exists():
            continue  # torn down already
        if info.tap and ns is not None and alive:
            detach_tap(ns, info.tap)
        try:
            cfg = parse_config(json.loads(conf.read_text()), str(conf))
        except (OSError, ValueError, RktError) as e:
            log.warn(f"net: cannot tear down network {info.netName!r}: {e}")
            failed = True
            continue
        path = [Path(p) for p in info.pluginPath.split(":") if p] or cni_path()
        cid = info.containerID or pod_dir.name
        att = cni.Attachment(cid, (info.netns or str(ns or "")) if alive else "",
                             info.ifName, info.args)  # fmt: skip
        errors = cni.delete(cfg, att, info.runtimeConfig, info.result, path)
        for err in errors:
            log.warn(f"net: {err}")
        if errors:
            failed = True
        else:
            conf.unlink()
    if ns is not None:
        delete_netns(ns)
    for cid in {i.containerID for i in infos if i.containerID}:
        try:
            iptables.sweep(cid, {i.netName for i in infos if i.containerID == cid})
        except RktError as e:
            log.warn(f"net: cannot check for leftover iptables rules: {e}")
    if not failed:
        with contextlib.suppress(FileNotFoundError):
            (pod_dir / NETNS_FILE).unlink()
        with contextlib.suppress(OSError):
            (pod_dir / NET_DIR).rmdir()


def check_pod_network(pod_dir: Path) -> None:
    """CNI CHECK every network of a running pod; CniError names the broken one."""
    for info in netinfo.load(pod_dir):
        conf = pod_dir / NET_DIR / Path(info.netConf).name
        if not conf.exists():
            raise RktError(f"network {info.netName!r} of this pod was torn down")
        cfg = parse_config(json.loads(conf.read_text()), str(conf))
        path = [Path(p) for p in info.pluginPath.split(":") if p] or cni_path()
        att = cni.Attachment(info.containerID or pod_dir.name, info.netns, info.ifName, info.args)
        cni.check(cfg, att, info.runtimeConfig, info.result or {}, path)
