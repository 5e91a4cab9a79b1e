"""TCP round trips host -> pod: a VM pod vs a container pod vs a process on the host.

    .venv/bin/python bench/net_rtt.py [--n 2000] [--runs 3]     (root, CNI plugins, QEMU)

One 1-byte echo over one TCP connection (TCP_NODELAY), --n round trips per run, against
`busybox nc -ll -e /bin/cat`:
  host:      on the host, at 127.0.0.1
  container: `rkt run` with the coreos (container) stage1, --net=default, at the pod IP
  vm:        `rkt run` with the kvm stage1 (QEMU; TCG where /dev/kvm cannot boot a
             guest, as on the machines this was written on), --net=default, at the pod IP
Prints median round-trip times and the ratios to the host process.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyrkt.stage1.build.aci import Flavor, build_stage1_aci

PORT = 7007
ECHO = ["/bin/busybox", "nc", "-ll", "-p", str(PORT), "-e", "/bin/cat"]


def connect(ip: str, tries: int = 600) -> socket.socket:
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


def echo_aci(work: Path) -> Path:
    root = work / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for a in ("sh", "cat", "nc"):
        (root / "bin" / a).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (work / "manifest").write_text(json.dumps({
        "acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/echo",
        "labels": [{"name": "arch", "value": "amd64"}, {"name": "os", "value": "linux"}],
        "app": {"exec": ECHO, "user": "0", "group": "0"},
    }))
    aci = work / "echo.aci"
    with tarfile.open(aci, "w") as tar:
        tar.add(work / "manifest", arcname="manifest")
        tar.add(root, arcname="rootfs")
    return aci


@contextmanager
def rkt_pod(work: Path, stage1: Path, aci: Path) -> Iterator[str]:
    """`rkt run` in the background; the pod's IP on `default` while it runs."""
    d, uf = work / "rkt", work / f"uuid-{stage1.stem}"
    base = [sys.executable, "-m", "pyrkt", f"--dir={d}"]
    p = subprocess.Popen([*base, "run", "--insecure-options=image", f"--stage1-path={stage1}",
                          "--net=default", f"--uuid-file-save={uf}", str(aci)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while True:
            if p.poll() is not None:
                raise SystemExit(f"rkt run ({stage1.name}) exited {p.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit(f"rkt run ({stage1.name}): no network after 300 s")
            u = uf.read_text().strip() if uf.exists() else ""
            ni = d / "pods" / "run" / u / "net-info.json"
            if u and ni.exists():
                info = json.loads(ni.read_text())
                if info and info[0].get("ip"):
                    break
            time.sleep(0.2)
        yield str(info[0]["ip"])
    finally:
        if p.poll() is None:
            subprocess.run([*base, "stop", "--force", u], capture_output=True, check=False)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        subprocess.run([*base, "gc", "--grace-period=0s"], capture_output=True, check=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    res: dict[str, list[float]] = {"host": [], "container": [], "vm": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        aci = echo_aci(work / "aci")
        host = subprocess.Popen(["busybox", *ECHO[1:]], stdin=subprocess.DEVNULL)
        try:
            res["host"] = [rtt_us("127.0.0.1", a.n) for _ in range(a.runs)]
        finally:
            host.kill()
            host.wait()
        for key, flavor in (("container", Flavor.COREOS), ("vm", Flavor.KVM)):
            stage1 = build_stage1_aci(flavor, work / "stage1")
            with rkt_pod(work, stage1, aci) as ip:
                res[key] = [rtt_us(ip, a.n) for _ in range(a.runs)]
    host_us = statistics.median(res["host"])
    print(f"TCP 1-byte echo round trip, median of {a.runs} runs x {a.n}:")
    for k, v in res.items():
        m = statistics.median(v)
        print(f"  {k:<10} {m:9.1f} us   x{m / host_us:6.2f} vs host")


if __name__ == "__main__":
    main()
