"""Pod networks with the real CNI plugins, in network namespaces these tests create.

Each pod is a folder under tmp_path with a UUID name; every test tears its pods down
(also on failure) and checks nothing it created is left: namespaces, veths, iptables
rules and IPAM leases that name its pods.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyrkt.errors import RktError
from pyrkt.net import (
    PodNetwork,
    check_pod_network,
    netns_exec_argv,
    setup_pod_network,
    teardown_pod_network,
)
from pyrkt.stage1.plan import PortPlan
from support.net import free_port, host_leftovers, http_get, sh

pytestmark = [pytest.mark.root, pytest.mark.cni]



def leftovers(uuids: list[str], host_ifs: list[str]) -> list[str]:
    """Everything on the host that still names one of these pods."""
    links = sh("ip -o link")
    return host_leftovers(uuids) + [f"link {i}" for i in host_ifs if i and f" {i}@" in links]


class Pods:
    """Creates pods (network only) and guarantees teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.config = tmp / "config"
        self.config.mkdir()
        self.dirs: list[Path] = []
        self.host_ifs: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def net_d(self, name: str, body: dict[str, object]) -> None:
        (self.config / "net.d").mkdir(exist_ok=True)
        (self.config / "net.d" / name).write_text(json.dumps(body))

    def new(self, net: str, ports: tuple[PortPlan, ...] = (), for_vm: bool = False) -> PodNetwork:
        u = str(uuidlib.uuid4())
        d = self.tmp / u
        d.mkdir()
        self.dirs.append(d)
        pn = setup_pod_network(d, u, net, config_dirs=[self.config], ports=ports, for_vm=for_vm)
        self.host_ifs += [i.host_ifname for i in pn.interfaces]
        return pn

    def spawn(self, ns: Path, argv: list[str]) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(netns_exec_argv(ns) + argv, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def httpd(self, pn: PodNetwork, body: str, port: int = 80) -> None:
        www = self.tmp / f"www-{len(self.procs)}"
        www.mkdir()
        (www / "index.html").write_text(body)
        assert pn.netns is not None
        self.spawn(pn.netns, ["busybox", "httpd", "-f", "-p", f"0.0.0.0:{port}", "-h", str(www)])

    @property
    def uuids(self) -> list[str]:
        return [d.name for d in self.dirs]

    def close(self) -> list[str]:
        for p in self.procs:
            p.kill()
            p.wait()
        for d in self.dirs:
            teardown_pod_network(d)
        return leftovers(self.uuids, self.host_ifs)


def pods_in(tmp_path: Path) -> Iterator[Pods]:
    """The body of the `pods` fixture (shared with test_net_vm)."""
    p = Pods(tmp_path)
    try:
        yield p
    finally:
        left = p.close()
    assert left == [], f"left behind: {left}"


@pytest.fixture
def pods(tmp_path: Path) -> Iterator[Pods]:
    yield from pods_in(tmp_path)


def in_ns(ns: Path, cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(netns_exec_argv(ns) + cmd, capture_output=True, text=True,
                          check=False, timeout=30)


@pytest.mark.parametrize(("net", "prefix"), [("default", "172.16.28."),
                                             ("default-restricted", "172.31.")])
def test_host_reaches_server_in_pod(pods: Pods, net: str, prefix: str) -> None:
    pn = pods.new(net)
    (iface,) = pn.interfaces
    assert iface.net_name == net and iface.ifname == "eth0"
    assert iface.ip.startswith(prefix)
    pods.httpd(pn, f"hello from {net}\n")
    assert http_get(iface.ip) == f"hello from {net}\n"
    info = json.loads((pods.dirs[0] / "net-info.json").read_text())
    assert info[0]["netName"] == net and info[0]["ip"] == iface.ip
    assert info[0]["ifName"] == "eth0" and info[0]["mask"]
    masq = sh("iptables-save -t nat")
    assert (pods.uuids[0] in masq) == (net == "default")  # only `default` masquerades


def test_cni_check_notices_a_broken_attachment(pods: Pods) -> None:
    pn = pods.new("default")
    check_pod_network(pods.dirs[0])
    assert pn.netns is not None
    in_ns(pn.netns, ["ip", "addr", "flush", "dev", "eth0"])
    with pytest.raises(RktError, match="network 'default': plugin ptp CHECK failed"):
        check_pod_network(pods.dirs[0])


def test_cni_args_choose_the_address(pods: Pods) -> None:
    ip = f"172.31.{random.randrange(100, 250)}.{random.randrange(2, 250)}"
    pn = pods.new(f"default-restricted:IP={ip}")
    assert pn.interfaces[0].ip == ip
    info = json.loads((pods.dirs[0] / "net-info.json").read_text())
    assert info[0]["args"] == f"IP={ip}"


def test_two_pods_on_one_network_reach_each_other(pods: Pods) -> None:
    a, b = pods.new("default"), pods.new("default")
    assert a.interfaces[0].ip != b.interfaces[0].ip
    pods.httpd(a, "pod a\n")
    http_get(a.interfaces[0].ip)
    assert b.netns is not None
    cp = in_ns(b.netns, ["busybox", "wget", "-qO-", f"http://{a.interfaces[0].ip}/"])
    assert cp.stdout == "pod a\n", cp.stderr


def test_net_none_has_only_loopback(pods: Pods) -> None:
    pn = pods.new("none")
    assert pn.mode == "none" and pn.interfaces == () and pn.netns is not None
    cp = in_ns(pn.netns, ["ip", "-o", "link"])
    names = [line.split(":")[1].strip() for line in cp.stdout.splitlines()]
    assert names == ["lo"]
    assert "UP" in cp.stdout


def test_net_host_has_no_namespace_and_is_refused_for_vms(pods: Pods) -> None:
    assert pods.new("host").netns is None
    with pytest.raises(RktError, match="--net=host is not supported by the kvm stage1"):
        pods.new("host", for_vm=True)


def test_unknown_network_fails_clearly_and_leaves_nothing(pods: Pods) -> None:
    before = sh("ip netns list")
    with pytest.raises(RktError, match="networks not found: nosuchnet"):
        pods.new("nosuchnet")
    assert sh("ip netns list") == before
    assert not (pods.dirs[0] / "net-info.json").exists()


def _bridge_net(pods: Pods) -> tuple[str, str]:
    """A bridge network in net.d with its own bridge and a random 10.x subnet."""
    tag = f"{random.randrange(1 << 16):04x}"
    subnet = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
    pods.net_d(f"10-br{tag}.conflist", {
        "cniVersion": "1.0.0", "name": f"br{tag}", "plugins": [{
            "type": "bridge", "bridge": f"rkbr{tag}", "isGateway": True, "ipMasq": False,
            "ipam": {"type": "host-local", "subnet": f"{subnet}.0/24",
                     "routes": [{"dst": f"{subnet}.0/24"}]},
        }],
    })
    return f"br{tag}", f"rkbr{tag}"


@pytest.fixture
def bridge(pods: Pods) -> Iterator[tuple[str, str]]:
    name, dev = _bridge_net(pods)
    yield name, dev
    sh(f"ip link del {dev}")  # the bridge plugin leaves the bridge itself


def test_custom_bridge_network_from_net_d(pods: Pods, bridge: tuple[str, str]) -> None:
    name, _ = bridge
    a = pods.new(name)
    b = pods.new(f"{name}:IgnoreUnknown=1")
    assert [i.net_name for i in a.interfaces] == [name, "default-restricted"]
    assert [i.ifname for i in a.interfaces] == ["eth0", "eth1"]
    pods.httpd(a, "bridged\n")
    assert http_get(a.interfaces[0].ip) == "bridged\n"
    assert b.netns is not None
    cp = in_ns(b.netns, ["busybox", "wget", "-qO-", f"http://{a.interfaces[0].ip}/"])
    assert cp.stdout == "bridged\n", cp.stderr


@pytest.fixture
def other_host() -> Iterator[tuple[Path, str]]:
    """A second namespace standing in for another machine, linked to the host by a veth.

    Yields (its namespace, the host's address as that machine sees it)."""
    tag = f"{random.randrange(1 << 16):04x}"
    ns, host_if = f"rktpeer{tag}", f"rkpeer{tag}"
    net = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
    cmds = [
        f"ip netns add {ns}",
        f"ip link add {host_if} type veth peer name eth0 netns {ns}",
        f"ip addr add {net}.1/24 dev {host_if}", f"ip link set {host_if} up",
        f"ip -n {ns} addr add {net}.2/24 dev eth0", f"ip -n {ns} link set eth0 up",
        f"ip -n {ns} link set lo up",
    ]
    try:
        for c in cmds:
            subprocess.run(c, shell=True, check=True)
        yield Path("/run/netns") / ns, f"{net}.1"
    finally:
        sh(f"ip link del {host_if}; ip netns del {ns}")


def test_port_forwarding_from_loopback_and_another_host(
    pods: Pods, other_host: tuple[Path, str]
) -> None:
    peer_ns, host_ip = other_host
    hp = free_port()
    pn = pods.new("default", ports=(PortPlan("http", "tcp", 8080, hp),))
    pods.httpd(pn, "forwarded\n", port=8080)
    http_get(pn.interfaces[0].ip, 8080)
    assert http_get("127.0.0.1", hp) == "forwarded\n"
    cp = in_ns(peer_ns, ["busybox", "wget", "-qO-", f"http://{host_ip}:{hp}/"])
    assert cp.stdout == "forwarded\n", cp.stderr
    info = json.loads((pods.dirs[0] / "net-info.json").read_text())
    assert info[0]["runtimeConfig"]["portMappings"][0]["hostPort"] == hp


def test_port_bound_to_one_host_address(pods: Pods, other_host: tuple[Path, str]) -> None:
    peer_ns, host_ip = other_host
    hp = free_port()
    pn = pods.new("default", ports=(PortPlan("http", "tcp", 8080, hp, "127.0.0.1"),))
    pods.httpd(pn, "local only\n", port=8080)
    assert http_get("127.0.0.1", hp) == "local only\n"
    cp = in_ns(peer_ns, ["busybox", "wget", "-qO-", f"http://{host_ip}:{hp}/"])
    assert cp.returncode != 0 and "refused" in cp.stderr


def test_setup_teardown_cycles_leave_nothing(pods: Pods) -> None:
    links_before = len(sh("ip -o link").splitlines())
    for _ in range(20):
        hp = free_port()
        pods.new("default", ports=(PortPlan("p", "tcp", 80, hp),))
        d = pods.dirs[-1]
        teardown_pod_network(d)
        teardown_pod_network(d)  # idempotent
    left = leftovers(pods.uuids, pods.host_ifs)
    assert left == []
    # Other users of this machine may add links meanwhile; ours are all gone.
    assert len(sh("ip -o link").splitlines()) <= links_before + 2


def test_teardown_when_the_namespace_is_already_gone(pods: Pods) -> None:
    """As after a reboot (/run is empty): leases and rules still go."""
    pn = pods.new("default", ports=(PortPlan("p", "tcp", 80, free_port()),))
    assert pn.netns is not None
    subprocess.run(["ip", "netns", "delete", pn.netns.name], check=True)
    teardown_pod_network(pods.dirs[0])
    assert leftovers(pods.uuids, pods.host_ifs) == []


def test_teardown_after_sigkill_of_the_stage1(pods: Pods) -> None:
    """A process that set the network up is SIGKILLed; teardown (gc) still releases all."""
    u = str(uuidlib.uuid4())
    d = pods.tmp / u
    d.mkdir()
    pods.dirs.append(d)
    code = (
        "import sys, time; from pathlib import Path; from pyrkt.net import setup_pod_network;"
        f"setup_pod_network(Path({str(d)!r}), {u!r}, 'default', config_dirs=[]);"
        "print('up', flush=True); time.sleep(600)"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "up\n"
        info = json.loads((d / "net-info.json").read_text())
        pods.host_ifs.append(info[0]["hostIfName"])
        assert leftovers([u], []) != []
    finally:
        p.kill()
        p.wait()
    # As `gc` does: the pod folder has moved (run -> exited-garbage) since setup.
    moved = d.parent / "garbage" / u
    moved.parent.mkdir()
    d.rename(moved)
    pods.dirs[-1] = moved
    teardown_pod_network(moved)
    assert leftovers([u], pods.host_ifs) == []


STAGE1_LIKE = """
import os, sys
from pathlib import Path
from pyrkt.linux import mount, ns
from pyrkt.net import host_namespaces, setup_pod_network, teardown_pod_network
pod, u = Path(sys.argv[1]), sys.argv[2]
net = setup_pod_network(pod, u, "default", config_dirs=[])
try:
    with host_namespaces():
        # What the container stage1 does in its own process before forking pod init.
        ns.setns_path(str(net.netns), ns.CLONE.NEWNET)
        ns.unshare(ns.CLONE.NEWNS | ns.CLONE.NEWPID)
        mount.make_private("/", slave=True)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)  # the pod's pid namespace is now dead: fork would say ENOMEM
finally:
    teardown_pod_network(pod)
print("torn down")
"""


def test_teardown_after_the_stage1_entered_pod_namespaces(pods: Pods) -> None:
    u = str(uuidlib.uuid4())
    d = pods.tmp / u
    d.mkdir()
    pods.dirs.append(d)
    cp = subprocess.run([sys.executable, "-c", STAGE1_LIKE, str(d), u], capture_output=True,
                        text=True, timeout=60, check=False)
    assert cp.returncode == 0 and cp.stdout == "torn down\n", cp.stderr
    assert leftovers([u], []) == []


# An `iptables` first on the plugins' PATH (the one variable they get from ours) that
# hangs on the rule jumping to the pod's masquerade chain: ptp has made the chain (and
# its rules) and not yet that jump.
HANG_BEFORE_JUMP = """#!/bin/sh
case "$*" in *"-A POSTROUTING"*) touch {mark}; exec sleep 600;; esac
exec /usr/sbin/iptables "$@"
"""


def test_teardown_after_a_kill_inside_the_cni_add(pods: Pods) -> None:
    """rkt's stage1 is killed while ptp's ADD runs, between making the pod's `CNI-...`
    masquerade chain and the rule that jumps to it; its mount namespace (holding the
    pod's namespace mount) dies with it. gc's teardown still removes the chain."""
    u = str(uuidlib.uuid4())
    d = pods.tmp / u
    d.mkdir()
    pods.dirs.append(d)
    bindir, mark = pods.tmp / "bin", pods.tmp / "mark"
    bindir.mkdir()
    (bindir / "iptables").write_text(HANG_BEFORE_JUMP.format(mark=mark))
    (bindir / "iptables").chmod(0o755)
    code = ("from pathlib import Path; from pyrkt.net import setup_pod_network;"
            f"setup_pod_network(Path({str(d)!r}), {u!r}, 'default', config_dirs=[])")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    # as stage0 runs a stage1: in a mount namespace of its own, slave to the host's
    p = subprocess.Popen(["unshare", "-m", "--propagation", "slave", sys.executable, "-c",
                          code], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not mark.exists():
            assert p.poll() is None and time.monotonic() < deadline, "ADD never got there"
            time.sleep(0.02)
        # the reference plugins' name for it: CNI- + sha512(network + container ID)
        chain = ("CNI-" + hashlib.sha512(f"default{u}".encode()).hexdigest())[:28]
        assert f"-N {chain}" in sh("iptables -t nat -S")  # the state the kill leaves
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    teardown_pod_network(d)
    assert chain not in sh("iptables-save -t nat")
    assert leftovers([u], []) == []
