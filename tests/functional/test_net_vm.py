"""VM interfaces without QEMU: a "guest" namespace stands in for the VM.

`setup_pod_network(..., for_vm=True)` gives each CNI interface a tap joined to it by tc
redirects. Here a small frame pump does what QEMU does with that tap (opens it inside
the pod namespace and moves frames to and from a guest NIC: a second tap in the guest
namespace, carrying the MAC the network told us to give the guest). The guest is set up
by running `guest_network_script` under busybox `sh`, as the real guest init does.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import select
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_net_cni import Pods, in_ns, pods_in

from pyrkt.net import PodNetwork, guest_network_script, in_netns
from support.net import http_get, sh

pytestmark = [pytest.mark.root, pytest.mark.cni]

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


class FakeVm:
    """A guest namespace whose NICs are wired to the pod's taps by a userspace pump."""

    def __init__(self, pn: PodNetwork) -> None:
        assert pn.netns is not None
        self.name = f"rktguest{random.randrange(1 << 20):05x}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.ns = Path("/run/netns") / self.name
        self.stop_r, self.stop_w = os.pipe()
        self.pairs: list[tuple[int, int]] = []
        self.thread: threading.Thread | None = None
        try:
            self._start(pn)
        except BaseException:
            self.close()
            raise

    def _start(self, pn: PodNetwork) -> None:
        assert pn.netns is not None
        for i, iface in enumerate(pn.interfaces):
            with in_netns(pn.netns):
                host_fd = open_tap(iface.tap)
            with in_netns(self.ns):
                # Named in the reverse order: the guest script must sort names out.
                guest_fd = open_tap(nic := f"eth{len(pn.interfaces) - 1 - i}")
            # What QEMU's `-device virtio-net,mac=...` does: the guest NIC gets the MAC.
            subprocess.run(["ip", "-n", self.name, "link", "set", nic, "address",
                            iface.mac], check=True)
            self.pairs.append((host_fd, guest_fd))
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()
        script = guest_network_script([i.state for i in pn.interfaces])
        # `ip netns exec` mounts the namespace's own /sys, as a guest has.
        cp = subprocess.run(["ip", "netns", "exec", self.name, "busybox", "sh", "-ec", script],
                            capture_output=True, text=True, check=False, timeout=30)
        assert cp.returncode == 0, f"guest script failed:\n{script}\n{cp.stderr}"

    def _pump(self) -> None:
        peer = {}
        for a, b in self.pairs:
            peer[a], peer[b] = b, a
        while True:
            ready, _, _ = select.select([self.stop_r, *peer], [], [])
            if self.stop_r in ready:
                return
            for fd in ready:
                with contextlib.suppress(OSError):
                    os.write(peer[fd], os.read(fd, 65536))

    def close(self) -> None:
        os.write(self.stop_w, b"x")
        if self.thread is not None:
            self.thread.join()
        for a, b in self.pairs:
            os.close(a)
            os.close(b)
        os.close(self.stop_r)
        os.close(self.stop_w)
        sh(f"ip netns del {self.name}")


@pytest.fixture
def pods(tmp_path: Path) -> Iterator[Pods]:
    yield from pods_in(tmp_path)


@pytest.fixture
def vms() -> Iterator[list[FakeVm]]:
    made: list[FakeVm] = []
    yield made
    for v in made:
        v.close()


def serve_in_guest(pods: Pods, vm: FakeVm, body: str) -> None:
    www = pods.tmp / f"www-vm-{len(pods.procs)}"
    www.mkdir()
    (www / "index.html").write_text(body)
    pods.spawn(vm.ns, ["busybox", "httpd", "-f", "-p", "0.0.0.0:80", "-h", str(www)])


def test_vm_pod_on_default_network(pods: Pods, vms: list[FakeVm]) -> None:
    pn = pods.new("default", for_vm=True)
    (iface,) = pn.interfaces
    assert iface.tap == "tap0" and iface.mac and iface.mtu > 0
    assert pn.netns is not None
    filters = sh(f"tc -n {pn.netns.name} filter show dev eth0 ingress")
    assert "mirred" in filters and "tap0" in filters
    vm = FakeVm(pn)
    vms.append(vm)
    serve_in_guest(pods, vm, "hello from the guest\n")
    assert http_get(iface.ip) == "hello from the guest\n"
    # The guest owns the address CNI assigned and the routes CNI set up.
    cp = in_ns(vm.ns, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
    assert f"{iface.ip}/{iface.prefix_len}" in cp.stdout
    assert "default via" in in_ns(vm.ns, ["ip", "route"]).stdout


def test_vm_pods_on_a_bridge_network(pods: Pods, vms: list[FakeVm]) -> None:
    tag = f"{random.randrange(1 << 16):04x}"
    subnet = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
    pods.net_d("br.conf", {
        "cniVersion": "0.4.0", "name": f"vbr{tag}", "type": "bridge", "bridge": f"rkvb{tag}",
        "isGateway": True, "ipam": {"type": "host-local", "subnet": f"{subnet}.0/24"},
    })
    try:
        a = pods.new(f"vbr{tag}", for_vm=True)
        b = pods.new(f"vbr{tag}")
        assert [i.tap for i in a.interfaces] == ["tap0", "tap1"]  # + default-restricted
        vm = FakeVm(a)
        vms.append(vm)
        serve_in_guest(pods, vm, "bridged guest\n")
        ip = a.interfaces[0].ip
        assert http_get(ip) == "bridged guest\n"
        assert http_get(a.interfaces[1].ip) == "bridged guest\n"
        assert b.netns is not None
        cp = in_ns(b.netns, ["busybox", "wget", "-qO-", f"http://{ip}/"])
        assert cp.stdout == "bridged guest\n", cp.stderr
    finally:
        for v in vms:
            v.close()
        vms.clear()
        pods.close()
        sh(f"ip link del rkvb{tag}")


def test_vm_pod_on_a_macvlan_network(pods: Pods, vms: list[FakeVm]) -> None:
    """macvlan only delivers frames for its own MAC: the guest must carry it."""
    tag = f"{random.randrange(1 << 16):04x}"
    master = f"rkdm{tag}"
    subnet = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
    # A veth as the macvlan master: no `dummy` module on every kernel.
    sh(f"ip link add {master} type veth peer name rkdp{tag}")
    sh(f"ip link set {master} up && ip link set rkdp{tag} up")
    pods.net_d("mv.conf", {
        "cniVersion": "0.4.0", "name": f"mv{tag}", "type": "macvlan", "master": master,
        "mode": "bridge", "ipam": {"type": "host-local", "subnet": f"{subnet}.0/24"},
    })
    try:
        a = pods.new(f"mv{tag}", for_vm=True)
        b = pods.new(f"mv{tag}")
        vm = FakeVm(a)
        vms.append(vm)
        serve_in_guest(pods, vm, "macvlan guest\n")
        assert b.netns is not None
        ip = a.interfaces[0].ip
        # Retried: the guest's server may still be starting.
        loop = (f"for i in $(seq 50); do timeout 3 busybox wget -qO- http://{ip}/ && exit 0; "
                "sleep 0.1; done; exit 1")
        cp = in_ns(b.netns, ["sh", "-c", loop])
        assert cp.stdout == "macvlan guest\n", cp.stderr
    finally:
        for v in vms:
            v.close()
        vms.clear()
        pods.close()
        sh(f"ip link del {master}")
