"""Networking of VM pods through `rkt run` with the kvm stage1 (QEMU; TCG here):
the guest owns the CNI address (default, a bridge from net.d, default-restricted),
`--port` from 127.0.0.1 and from another "host", `--net=none` gives only loopback,
`--dns`/`--hosts-entry` land in the guest, and 20 VM pod cycles (one ended by SIGKILL
of QEMU) then `gc` leave no netns, link, iptables rule, IPAM lease or process behind.
A failing test prints every pod's serial log and QEMU command line.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import kvm_helpers as kh
import pytest

from support import net
from support.images import web_rootfs, write_aci
from support.net import free_port, host_leftovers, sh

pytestmark = [pytest.mark.qemu, pytest.mark.root, pytest.mark.cni]

# The issue asks for 20; each is a full TCG boot (5-20 s here, by load).
CYCLES = int(os.environ.get("PYRKT_NET_VM_CYCLES", "20"))
MANIFEST = {
    "acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/vmweb",
    "labels": [{"name": "version", "value": "1.0"}, {"name": "arch", "value": "amd64"},
               {"name": "os", "value": "linux"}],
    "app": {"exec": ["/bin/httpd", "-f", "-p", "80", "-h", "/www"], "user": "0", "group": "0",
            "ports": [{"name": "http", "protocol": "tcp", "port": 80}]},
}


def http_get(ip: str, port: int = 80) -> str:
    return net.http_get(ip, port, tries=100, pause=0.2)  # a VM pod's server starts late


def pod_links() -> set[str]:
    """The host's links that lead into a pod's network namespace."""
    return {f"link {ln.split(':')[1]}" for ln in sh("ip -o link").splitlines() if "rkt-" in ln}


def leftovers(uuids: list[str], links_before: set[str] = frozenset()) -> list[str]:
    """What still names these pods, and the pod links that were not there before the test
    (another pod on this host, e.g. a killed earlier run's, is not this test's leftover)."""
    found = host_leftovers(uuids)
    found += [f"process {pid}" for u in uuids for pid in kh.qemu_pids_for(u)]
    return found + sorted(pod_links() - links_before)


@pytest.fixture(scope="module")
def stage1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pyrkt.stage1.build.aci import Flavor, Hypervisor, build_stage1_aci

    return build_stage1_aci(Flavor.KVM, tmp_path_factory.mktemp("stage1"), Hypervisor.QEMU)


@pytest.fixture(scope="module")
def web_aci(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("vmaci")
    web_rootfs(work / "rootfs", ("sh", "httpd", "wget", "ip", "cat", "sleep", "true"),
               "hello from a VM pod\n")
    return write_aci(work, MANIFEST, "vmweb.aci")


class Rkt:
    def __init__(self, tmp: Path, stage1: Path) -> None:
        self.dir = tmp / "rkt"
        self.config = tmp / "etc-rkt"
        (self.config / "net.d").mkdir(parents=True)
        self.stage1 = stage1
        self.procs: list[subprocess.Popen[str]] = []
        self.n = 0
        self.links_before = pod_links()  # another pod's links are not this test's leftovers

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pyrkt", f"--dir={self.dir}",
                f"--local-config={self.config}", *args]

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self("run", "--insecure-options=image", f"--stage1-path={self.stage1}", *args)

    def start(self, *args: str) -> tuple[str, dict[str, str]]:
        """A pod in the background; (uuid, {network: ip}) once its QEMU runs.

        Networks are added one by one (net-info.json is rewritten before each ADD), and all
        of them are up before QEMU starts: waiting for QEMU sees every network."""
        self.n += 1
        uf = self.dir.parent / f"uuid-{self.n}"
        p = subprocess.Popen(self.argv("run", "--insecure-options=image",
                                       f"--stage1-path={self.stage1}",
                                       f"--uuid-file-save={uf}", *args),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert p.poll() is None, f"rkt run exited {p.returncode}: {p.communicate()}"
            u = uf.read_text().strip() if uf.exists() else ""
            ni = self.dir / "pods" / "run" / u / "net-info.json"
            if u and ni.exists() and kh.qemu_pids_for(u):
                info = json.loads(ni.read_text())
                if info and all(i.get("ip") for i in info):
                    return u, {i["netName"]: i["ip"] for i in info}
            time.sleep(0.2)
        raise AssertionError("the pod did not get its networks")

    def uuids(self) -> list[str]:
        return [p.name for p in kh.pod_dirs(self.dir)]

    def stop_all(self) -> None:
        live = [p for p in self.procs if p.poll() is None]
        if live:
            self("stop", "--force", *self.uuids())
        for p in live:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def rkt(tmp_path: Path, stage1: Path) -> Iterator[Rkt]:
    r = Rkt(tmp_path, stage1)
    try:
        yield r
        print(kh.all_diagnostics(r.dir))  # shown only when the test failed
    finally:
        r.stop_all()
        r("gc", "--grace-period=0s")
        for u in r.uuids():
            for pid in kh.qemu_pids_for(u):
                os.kill(pid, 9)
    left = leftovers(r.uuids() + [p.name for p in (r.dir / "pods").glob("*/*")], r.links_before)
    assert left == [], f"left behind after gc: {left}"


@pytest.fixture
def other_host() -> Iterator[tuple[Path, str]]:
    """A namespace standing in for another machine, linked to the host by a veth."""
    tag = f"{random.randrange(1 << 16):04x}"
    ns, host_if = f"rktvpeer{tag}", f"rkvpeer{tag}"
    net = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
    try:
        for c in (f"ip netns add {ns}",
                  f"ip link add {host_if} type veth peer name eth0 netns {ns}",
                  f"ip addr add {net}.1/24 dev {host_if}", f"ip link set {host_if} up",
                  f"ip -n {ns} addr add {net}.2/24 dev eth0", f"ip -n {ns} link set eth0 up"):
            subprocess.run(c, shell=True, check=True)
        yield Path("/run/netns") / ns, f"{net}.1"
    finally:
        sh(f"ip link del {host_if}; ip netns del {ns}")


def test_vm_pod_owns_its_address_and_ports_forward(
    rkt: Rkt, web_aci: Path, other_host: tuple[Path, str]
) -> None:
    peer, host_ip = other_host
    hp = free_port()
    _, ips = rkt.start("--net=default", f"--port=http:{hp}", str(web_aci))
    assert list(ips) == ["default"] and ips["default"].startswith("172.16.28.")
    assert http_get(ips["default"]) == "hello from a VM pod\n"
    assert http_get("127.0.0.1", hp) == "hello from a VM pod\n"
    cp = subprocess.run(["nsenter", f"--net={peer}", "--", "busybox", "wget", "-qO-",
                         f"http://{host_ip}:{hp}/"], capture_output=True, text=True,
                        timeout=30, check=False)
    assert cp.stdout == "hello from a VM pod\n", cp.stderr
    assert f"default:ip4={ips['default']}" in rkt("list", "--no-legend", "--full").stdout
    # Another pod on `default` (the container stage1) reaches the VM pod.
    r = rkt("run", "--insecure-options=image", "--net=default", str(web_aci), "--exec",
            "/bin/wget", "--", "-qO-", f"http://{ips['default']}/")
    assert r.returncode == 0 and r.stdout == "hello from a VM pod\n", r.stderr


def test_vm_pod_on_a_bridge_network_and_default_restricted(rkt: Rkt, web_aci: Path) -> None:
    tag = f"{random.randrange(1 << 16):04x}"
    subnet = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
    (rkt.config / "net.d" / "10-lan.conf").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": "lan", "type": "bridge", "bridge": f"rkvb{tag}",
        "isGateway": True, "ipam": {"type": "host-local", "subnet": f"{subnet}.0/24"},
    }))
    try:
        _, ips = rkt.start("--net=lan", str(web_aci))
        assert sorted(ips) == ["default-restricted", "lan"]
        assert http_get(ips["lan"]) == "hello from a VM pod\n"
        assert http_get(ips["default-restricted"]) == "hello from a VM pod\n"
    finally:
        rkt.stop_all()
        rkt("gc", "--grace-period=0s")
        sh(f"ip link del rkvb{tag}")


def test_vm_pod_net_none_dns_and_hosts(rkt: Rkt, web_aci: Path) -> None:
    r = rkt.run("--net=none", "--dns=10.0.0.53", "--dns-search=example.com",
                "--hosts-entry=10.1.1.1=db", str(web_aci), "--exec", "/bin/sh", "--", "-c",
                "ip -o link | cut -d: -f2; cat /etc/resolv.conf /etc/hosts")
    assert r.returncode == 0, r.stderr
    lines = [ln.strip() for ln in r.stdout.splitlines()]
    assert "lo" in lines and "eth0" not in lines
    assert "nameserver 10.0.0.53" in lines and "search example.com" in lines
    assert "10.1.1.1 db" in lines  # rkt's line


def test_vm_pod_cycles_then_gc_leave_nothing(rkt: Rkt, web_aci: Path) -> None:
    for i in range(CYCLES - 1):
        r = rkt.run("--net=default", f"--port=http:{free_port()}", str(web_aci),
                    "--exec", "/bin/true")
        assert r.returncode == 0, f"cycle {i}: {r.stderr}"
    # The last: QEMU is SIGKILLed while the pod runs; the next gc must clean up.
    u, _ = rkt.start("--net=default", f"--port=http:{free_port()}", str(web_aci))
    pids = kh.qemu_pids_for(u)
    assert pids, "the pod's QEMU never started"
    for pid in pids:
        os.kill(pid, 9)
    rkt.procs[-1].wait(timeout=60)
    assert rkt("gc", "--grace-period=0s").returncode == 0
    assert leftovers(rkt.uuids(), rkt.links_before) == []
