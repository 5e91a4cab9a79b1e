"""Networking through `rkt run` (the default container stage1), as a user sees it:
pod IPs on `default`/`default-restricted`, `--port`, two pods, a custom bridge network
from `--local-config`'s net.d, `--dns`/`--hosts-entry`, `--net=nosuchnet`, and `gc`
releasing everything. The VM flavor's data path is covered by test_net_vm/test_net_qemu.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_net_cni import leftovers

from support.images import web_rootfs, write_aci
from support.net import free_port, http_get, sh

pytestmark = [pytest.mark.root, pytest.mark.cni]

MANIFEST = {
    "acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/netbox",
    "labels": [{"name": "version", "value": "1.0"}, {"name": "arch", "value": "amd64"},
               {"name": "os", "value": "linux"}],
    "app": {"exec": ["/bin/httpd", "-f", "-p", "80", "-h", "/www"], "user": "0", "group": "0",
            "ports": [{"name": "http", "protocol": "tcp", "port": 80}]},
}


@pytest.fixture(scope="module")
def web_aci(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("netaci")
    web_rootfs(work / "rootfs", ("sh", "httpd", "wget", "ip", "cat", "sleep"),
               "hello from a pod\n")
    return write_aci(work, MANIFEST, "netbox.aci")


class Rkt:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "rkt"
        self.config = tmp / "etc-rkt"
        (self.config / "net.d").mkdir(parents=True)
        self.running: list[subprocess.Popen[str]] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pyrkt", f"--dir={self.dir}",
                f"--local-config={self.config}", *args]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, check=False)

    def start(self, *args: str) -> tuple[str, dict[str, str]]:
        """`rkt run` in the background; (uuid, {network: pod ip}) once networks are up."""
        uf = self.dir.parent / f"uuid-{len(self.running)}"
        p = subprocess.Popen(self.argv("run", "--insecure-options=image",
                                       f"--uuid-file-save={uf}", *args),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.running.append(p)
        deadline = time.monotonic() + 60
        while True:
            if p.poll() is not None:
                raise AssertionError(f"rkt run exited {p.returncode}: {p.communicate()}")
            assert time.monotonic() < deadline, "pod did not get its networks"
            if uf.exists() and uf.read_text().strip():
                u = uf.read_text().strip()
                ni = self.dir / "pods" / "run" / u / "net-info.json"
                pid = self.dir / "pods" / "run" / u / "pid"
                if ni.exists() and pid.exists():
                    info = json.loads(ni.read_text())
                    if all(i.get("ip") for i in info):
                        return u, {i["netName"]: i["ip"] for i in info}
            time.sleep(0.1)

    def uuids(self) -> list[str]:
        return [p.name for p in (self.dir / "pods").glob("*/*")]

    def close(self) -> None:
        for p in self.running:
            if p.poll() is None:
                self("stop", *self.uuids())
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self("gc", "--grace-period=0s")


@pytest.fixture
def rkt(tmp_path: Path) -> Iterator[Rkt]:
    r = Rkt(tmp_path)
    try:
        yield r
    finally:
        r.close()
    left = leftovers(r.uuids(), [])
    assert left == [], f"left behind after gc: {left}"


@pytest.mark.parametrize(("net", "prefix"), [("default", "172.16.28."),
                                             ("default-restricted", "172.31.")])
def test_host_reaches_the_pod_ip(rkt: Rkt, web_aci: Path, net: str, prefix: str) -> None:
    u, ips = rkt.start(f"--net={net}", str(web_aci))
    assert list(ips) == [net] and ips[net].startswith(prefix)
    assert http_get(ips[net]) == "hello from a pod\n"
    listing = rkt("list", "--no-legend", "--full").stdout
    assert u in listing and f"{net}:ip4={ips[net]}" in listing


def test_port_forward_and_two_pods(rkt: Rkt, web_aci: Path) -> None:
    hp = free_port()
    _, a = rkt.start(f"--port=http:{hp}", str(web_aci))
    assert http_get("127.0.0.1", hp) == "hello from a pod\n"
    _, b = rkt.start(str(web_aci), "--exec", "/bin/sh", "--", "-c",
                     f"wget -qO /www/got http://{a['default']}/ ; httpd -f -p 80 -h /www")
    # Pod b fetched pod a's page into its own web root: pod-to-pod on `default`.
    deadline = time.monotonic() + 30
    while True:
        try:
            body = http_get(b["default"], tries=1) and subprocess.run(
                ["busybox", "wget", "-qO-", f"http://{b['default']}/got"],
                capture_output=True, text=True, check=False).stdout
        except AssertionError:
            body = ""
        if body == "hello from a pod\n" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert body == "hello from a pod\n"


def test_custom_bridge_network_from_local_config(rkt: Rkt, web_aci: Path) -> None:
    tag = f"{random.randrange(1 << 16):04x}"
    subnet = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
    (rkt.config / "net.d" / "10-lan.conf").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": "lan", "type": "bridge", "bridge": f"rkrb{tag}",
        "isGateway": True, "ipam": {"type": "host-local", "subnet": f"{subnet}.0/24"},
    }))
    try:
        _, ips = rkt.start("--net=lan", str(web_aci))
        assert ips["lan"].startswith(subnet + ".") and "default-restricted" in ips
        assert http_get(ips["lan"]) == "hello from a pod\n"
    finally:
        rkt.close()
        sh(f"ip link del rkrb{tag}")


def test_dns_and_hosts_entries_land_in_the_pod(rkt: Rkt, web_aci: Path) -> None:
    r = rkt("run", "--insecure-options=image", "--dns=10.0.0.53", "--dns-search=example.com",
            "--dns-opt=ndots:3", "--hosts-entry=10.1.1.1=db", str(web_aci), "--exec",
            "/bin/sh", "--", "-c", "cat /etc/resolv.conf /etc/hosts")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "nameserver 10.0.0.53" in lines and "search example.com" in lines
    assert "options ndots:3" in lines and "10.1.1.1 db" in lines  # rkt's line
    # rkt: the hostname on the 127.0.0.1 line, whatever the pod's address
    assert any(ln.startswith("127.0.0.1 ") and " rkt-" in ln for ln in lines)


def test_unknown_network_fails_clearly_and_leaves_nothing(rkt: Rkt, web_aci: Path) -> None:
    before = sh("ip netns list")
    r = rkt("run", "--insecure-options=image", "--net=nosuchnet", str(web_aci))
    assert r.returncode == 254
    assert "networks not found: nosuchnet" in r.stderr
    assert sh("ip netns list") == before
    assert rkt.uuids() == []  # no pod was even prepared


def test_bad_config_and_missing_plugin_are_named(rkt: Rkt, web_aci: Path) -> None:
    bad = rkt.config / "net.d" / "20-bad.conf"
    bad.write_text("{ this is not json")
    r = rkt("run", "--insecure-options=image", "--net=default", str(web_aci))
    assert r.returncode == 254 and f"invalid network config {bad}" in r.stderr
    bad.write_text(json.dumps({"name": "odd", "type": "nosuchplugin"}))
    r = rkt("run", "--insecure-options=image", "--net=odd", str(web_aci))
    assert r.returncode == 254
    assert "CNI plugin 'nosuchplugin' not found" in r.stderr and str(bad) in r.stderr


def test_dns_from_the_cni_result(rkt: Rkt, web_aci: Path) -> None:
    (rkt.config / "net.d" / "10-withdns.conf").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": "withdns", "type": "ptp",
        "ipam": {"type": "host-local",
                 "subnet": f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}.0/24"},
        "dns": {"nameservers": ["10.0.0.10"], "search": ["svc.example"]},
    }))
    r = rkt("run", "--insecure-options=image", "--net=withdns", str(web_aci), "--exec",
            "/bin/cat", "--", "/etc/resolv.conf")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "nameserver 10.0.0.10" in lines and "search svc.example" in lines
