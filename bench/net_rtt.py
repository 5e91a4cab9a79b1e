"""TCP round trips host -> pod: a VM pod vs a container pod vs a process on the host.

    .venv/bin/python bench/net_rtt.py [--n 2000] [--runs 3]     (root, CNI plugins, QEMU)

One 1-byte echo over one TCP connection (TCP_NODELAY), --n round trips per run:
  host:      `busybox nc -l -e cat` on 127.0.0.1
  container: the same server in a pod namespace on the `default` network (pyrkt.net:
             ptp veth), reached at the pod IP - the container stage1's data path
  vm:        the same server in a QEMU guest (TCG here: /dev/kvm cannot boot a guest on
             these machines) behind the pod's tap + tc redirect, reached at the pod IP
Prints median round-trip times and the ratios to the host process.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "functional"))

from test_net_qemu import build_initramfs, qemu_argv, wait_ready

from pyrkt.net import (
    PodInterface,
    guest_network_script,
    netns_exec_argv,
    setup_pod_network,
    teardown_pod_network,
)

PORT = 7007
ECHO = ["busybox", "nc", "-ll", "-p", str(PORT), "-e", "/bin/cat"]


def connect(ip: str, tries: int = 300) -> socket.socket:
    for _ in range(tries):
        try:
            s = socket.create_connection((ip, PORT), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b"x")
            if s.recv(1) == b"x":
                return s
            s.close()
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"no echo server at {ip}:{PORT}")


def rtt_us(ip: str, n: int) -> float:
    """Median round trip in microseconds over n 1-byte echoes."""
    s = connect(ip)
    times: list[float] = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            s.sendall(b"x")
            s.recv(1)
            times.append(time.perf_counter() - t)
    finally:
        s.close()
    return statistics.median(times) * 1e6


@contextmanager
def pod(work: Path, for_vm: bool) -> Iterator[tuple[Path, PodInterface]]:
    u = str(uuid.uuid4())
    d = work / u
    d.mkdir()
    pn = setup_pod_network(d, u, "default", config_dirs=[], for_vm=for_vm)
    try:
        assert pn.netns is not None
        yield pn.netns, pn.interfaces[0]
    finally:
        teardown_pod_network(d)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    res: dict[str, list[float]] = {"host": [], "container": [], "vm": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        host = subprocess.Popen(ECHO, stdin=subprocess.DEVNULL)
        try:
            for _ in range(a.runs):
                res["host"].append(rtt_us("127.0.0.1", a.n))
        finally:
            host.kill()
            host.wait()
        with pod(work, for_vm=False) as (ns, iface):
            ip = iface.ip
            srv = subprocess.Popen(netns_exec_argv(ns) + ECHO, stdin=subprocess.DEVNULL)
            try:
                for _ in range(a.runs):
                    res["container"].append(rtt_us(ip, a.n))
            finally:
                srv.kill()
                srv.wait()
        with pod(work, for_vm=True) as (ns, iface):
            script = guest_network_script([iface.state])
            initrd = build_initramfs(work / "initramfs", script, " ".join(ECHO) + " &")
            serial = work / "serial.log"
            argv = qemu_argv(initrd, serial, iface.tap, iface.mac)
            qemu = subprocess.Popen(netns_exec_argv(ns) + argv, stdin=subprocess.DEVNULL)
            try:
                wait_ready(qemu, serial)
                for _ in range(a.runs):
                    res["vm"].append(rtt_us(iface.ip, a.n))
            finally:
                qemu.kill()
                qemu.wait()
    host_us = statistics.median(res["host"])
    accel = "kvm" if "kvm" in argv else "tcg"
    print(f"TCP 1-byte echo round trip, median of {a.runs} runs x {a.n}:")
    for k, v in res.items():
        m = statistics.median(v)
        label = f"vm ({accel})" if k == "vm" else k
        print(f"  {label:<12} {m:9.1f} us   x{m / host_us:5.2f} vs host")


if __name__ == "__main__":
    main()
