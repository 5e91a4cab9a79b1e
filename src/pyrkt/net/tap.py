"""VM interfaces: a tap device per CNI interface, joined to it with tc redirects.

Inside the pod's namespace, for CNI's `ethN` we create `tapN` and two `ingress` qdiscs
with `mirred egress redirect` filters (ethN -> tapN and tapN -> ethN), Kata's "tcfilter"
model: every frame CNI's interface receives goes to the VM and back, so the guest owns
the address CNI assigned, with ethN's MAC (macvlan and bridge fdbs expect that MAC).
QEMU, started inside the namespace, opens `tapN` by name. The guest is told addresses,
routes and MTU read back from the namespace (`guest_network_script` renders them).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyrkt import proc


@dataclass(frozen=True)
class Route:
    dst: str  # "default", "10.0.0.0/8", "172.16.28.1"
    gateway: str | None = None
    scope_link: bool = False


@dataclass(frozen=True)
class IfaceState:
    """An interface in the pod namespace as the kernel has it after CNI ADD."""

    ifname: str
    mac: str
    mtu: int
    addresses: tuple[str, ...]  # "172.16.28.5/24"
    routes: tuple[Route, ...]


def _ip_json(netns: Path, *args: str) -> list[dict[str, Any]]:
    out = proc.output(["ip", "-j", "-n", netns.name, *args]) if netns.parent == Path(
        "/run/netns"
    ) else proc.output(["nsenter", f"--net={netns}", "--", "ip", "-j", *args])
    data = json.loads(out or "[]")
    return data if isinstance(data, list) else []


def _ns_cmd(netns: Path, argv: list[str]) -> list[str]:
    if netns.parent == Path("/run/netns"):
        return [argv[0], "-n", netns.name, *argv[1:]]
    return ["nsenter", f"--net={netns}", "--", *argv]


def read_iface(netns: Path, ifname: str) -> IfaceState:
    link = _ip_json(netns, "link", "show", "dev", ifname)[0]
    addrs = _ip_json(netns, "-4", "addr", "show", "dev", ifname)
    addresses = tuple(
        f"{a['local']}/{a['prefixlen']}"
        for entry in addrs
        for a in entry.get("addr_info", [])
        if a.get("family") == "inet"
    )
    routes: list[Route] = []
    for r in _ip_json(netns, "-4", "route", "show", "dev", ifname):
        if r.get("protocol") == "kernel":
            continue  # the guest gets these from its own address
        routes.append(Route(r["dst"], r.get("gateway"), r.get("scope") == "link"))
    routes.sort(key=lambda r: r.gateway is not None)  # on-link routes first
    return IfaceState(ifname, link["address"], int(link.get("mtu", 1500)), addresses, tuple(routes))


def attach_tap(netns: Path, ifname: str, tap: str) -> None:
    """Create `tap` in the namespace and redirect all traffic between it and `ifname`."""
    mtu = read_iface(netns, ifname).mtu
    run = proc.run
    run(_ns_cmd(netns, ["ip", "tuntap", "add", "dev", tap, "mode", "tap"]), capture=True)
    run(_ns_cmd(netns, ["ip", "link", "set", "dev", tap, "mtu", str(mtu), "up"]), capture=True)
    for a, b in ((ifname, tap), (tap, ifname)):
        run(_ns_cmd(netns, ["tc", "qdisc", "add", "dev", a, "ingress"]), capture=True)
        run(
            _ns_cmd(
                netns,
                ["tc", "filter", "add", "dev", a, "parent", "ffff:", "protocol", "all",
                 "u32", "match", "u8", "0", "0", "action", "mirred", "egress", "redirect",
                 "dev", b],
            ),
            capture=True,
        )


def detach_tap(netns: Path, tap: str, ifname: str = "") -> None:
    """Remove `tap` (its qdisc and filters go with it) and, given ifname, the ingress
    qdisc attach_tap added on it (a namespace that outlives the VM: the OCI runtime's);
    nothing for what is gone."""
    if netns.exists():
        proc.run(_ns_cmd(netns, ["ip", "link", "del", "dev", tap]), check=False, capture=True)
        if ifname:
            proc.run(_ns_cmd(netns, ["tc", "qdisc", "del", "dev", ifname, "ingress"]),
                     check=False, capture=True)


def guest_network_script(ifaces: list[IfaceState]) -> str:
    """busybox `sh` for the guest: find each NIC by MAC, name it, address it, route it.

    NICs are renamed in two steps (to `rkttmpN`, then to `ethN`) so that names the
    guest kernel gave in another order never collide.
    """
    q = shlex.quote
    lines = ["ip link set lo up"]
    for i, st in enumerate(ifaces):
        lines += [
            f"dev=''; for d in /sys/class/net/*; do "
            f"if [ \"$(cat $d/address)\" = {q(st.mac.lower())} ]; then dev=${{d##*/}}; fi; done",
            f"[ -n \"$dev\" ] || {{ echo 'no NIC with MAC {st.mac}' >&2; exit 1; }}",
            f"ip link set dev \"$dev\" down; ip link set dev \"$dev\" name rkttmp{i}",
        ]
    for i, st in enumerate(ifaces):
        lines += [
            f"ip link set dev rkttmp{i} name {q(st.ifname)}",
            f"ip link set dev {q(st.ifname)} mtu {st.mtu} up",
        ]
        lines += [f"ip addr add {q(a)} dev {q(st.ifname)}" for a in st.addresses]
        for r in st.routes:
            cmd = f"ip route replace {q(r.dst)}"
            if r.gateway:
                cmd += f" via {q(r.gateway)}"
            cmd += f" dev {q(st.ifname)}"
            if r.scope_link:
                cmd += " scope link"
            lines.append(cmd)
    return "\n".join(lines) + "\n"
