"""Pod networking for both stage1 flavors: CNI networks, netns, VM taps, ports, DNS.

Public API (import from `pyrkt.net`):

- `setup_pod_network(pod_dir, uuid, net, *, config_dirs, ports=(), for_vm=False)
  -> PodNetwork`: `net` is rkt's `--net` value (`default`, `none`, `host`, `all`,
  `a,b:IP=10.1.2.3`). Validates first (`networks not found: X`, a bad config names its
  file, a missing plugin is named), then creates `/run/netns/rkt-<uuid>` with `lo` up,
  runs the real CNI plugins (`/usr/lib/cni`, or `$PYRKT_CNI_PATH`) to create `eth0`,
  `eth1`... in it, forwards `ports` (PortPlan) with the CNI `portmap` plugin chained
  after the first network, and writes `POD/net-info.json` (rkt's format) and `POD/netns`.
  With `for_vm=True` each `ethN` also gets `tapN` joined by tc mirred redirects
  (`PodInterface.tap`); the guest must use `PodInterface.mac`, `.mtu`, `.state`
  (addresses, routes): `guest_network_script(...)` renders busybox `sh` for that.
  `--net=host` returns mode "host" with no namespace; for VMs it is refused.
  IPAM (host-local) keeps its leases host-wide in /var/lib/cni/networks, as CNI does.
- `teardown_pod_network(pod_dir)`: CNI DEL per network (reverse order; leases,
  veths, iptables rules), taps, the namespace. Idempotent, works after SIGKILL; `gc`,
  `stop` and the flavors' exit path call it.
- `check_pod_network(pod_dir)`: CNI CHECK of every network (raises CniError).
- `host_namespaces()`: context manager; a stage1 that unshares/joins namespaces in its
  own process wraps that part in it, so teardown afterwards runs on the host.
- `netns_exec_argv(path)` (argv prefix: `nsenter --net=PATH --`), `preexec_setns(path)`
  (a Popen `preexec_fn`), `in_netns(path)` (context manager, current thread).
- `render_resolv_conf(dns, cni_dns) -> str | None`, `render_hosts(hostname, dns) -> str`:
  the pod's /etc/resolv.conf and /etc/hosts (rkt's text).
- `parse_net_list(value) -> NetList` and `netinfo.load(pod_dir)` for `list`/`status`.
- `check_networks(net, config_dirs)`: the validation alone (stage0 runs it before a pod
  is prepared, so a bad --net leaves nothing behind).

Call `setup_pod_network` before the stage1 unshares its mount namespace (the netns bind
mount must be visible to `gc`).
"""

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms, and the container
# stage1 imports `pyrkt.net.dns` on every `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyrkt.net.api import (
        PodInterface,
        PodNetwork,
        check_pod_network,
        pod_netns,
        setup_pod_network,
        teardown_pod_network,
    )
    from pyrkt.net.config import check_networks
    from pyrkt.net.dns import CniDns, render_hosts, render_resolv_conf
    from pyrkt.net.netlist import NetList, parse_net_list
    from pyrkt.net.netns import host_namespaces, in_netns, netns_exec_argv, preexec_setns
    from pyrkt.net.tap import IfaceState, Route, guest_network_script

# Imported on first use: a stage1 that needs no network pays nothing at start-up.
_WHERE = {
    "api": ("PodInterface", "PodNetwork", "check_pod_network", "pod_netns",
            "setup_pod_network", "teardown_pod_network"),
    "config": ("check_networks",),
    "dns": ("CniDns", "render_hosts", "render_resolv_conf"),
    "netlist": ("NetList", "parse_net_list"),
    "netns": ("host_namespaces", "in_netns", "netns_exec_argv", "preexec_setns"),
    "tap": ("IfaceState", "Route", "guest_network_script"),
}


def __getattr__(name: str) -> object:
    import importlib

    for mod, names in _WHERE.items():
        if name in names:
            return getattr(importlib.import_module(f"pyrkt.net.{mod}"), name)
    raise AttributeError(f"module 'pyrkt.net' has no attribute {name!r}")


__all__ = [
    "CniDns",
    "IfaceState",
    "NetList",
    "PodInterface",
    "PodNetwork",
    "Route",
    "check_networks",
    "check_pod_network",
    "guest_network_script",
    "host_namespaces",
    "in_netns",
    "netns_exec_argv",
    "parse_net_list",
    "pod_netns",
    "preexec_setns",
    "render_hosts",
    "render_resolv_conf",
    "setup_pod_network",
    "teardown_pod_network",
]
