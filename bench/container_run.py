"""`rkt run` of /bin/true (container stage1, image already fetched) side by side with
`runc run` and `podman --runtime=runc run` of the same busybox rootfs; prints the
median wall time of each and the ratios. Needs root, runc, podman.

    sudo .venv/bin/python bench/container_run.py [--runs N] [--net none|host]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

MANIFEST = {
    "acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/busybox",
    "labels": [{"name": "version", "value": "1.0"}, {"name": "arch", "value": "amd64"},
               {"name": "os", "value": "linux"}],
    "app": {"exec": ["/bin/true"], "user": "0", "group": "0"},
}  # fmt: skip


# As installed: Python may cache bytecode (a dev shell often sets PYTHONDONTWRITEBYTECODE).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def busybox_rootfs(dest: Path) -> None:
    (dest / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", dest / "bin" / "busybox")
    for a in ("sh", "true"):
        os.symlink("busybox", dest / "bin" / a)
    for d in ("etc", "proc", "sys", "dev", "tmp"):
        (dest / d).mkdir()


def timed(argv: Sequence[str], runs: int, cwd: Path | None = None,
          argv_for: Callable[[int], Sequence[str]] | None = None) -> list[float]:
    out: list[float] = []
    for i in range(runs + 1):  # the first run warms caches and is dropped
        cmd = argv_for(i) if argv_for else argv
        t = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=cwd, env=ENV, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if i:
            out.append(time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--net", default="none", choices=("none", "host"))
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-container-") as tmp:
        work = Path(tmp)
        rootfs = work / "bundle" / "rootfs"
        busybox_rootfs(rootfs)
        (work / "manifest").write_text(json.dumps(MANIFEST))
        aci = work / "busybox.aci"
        with tarfile.open(aci, "w") as tar:
            tar.add(work / "manifest", arcname="manifest")
            tar.add(rootfs, arcname="rootfs")
        rkt = [sys.executable, "-m", "pyrkt", f"--dir={work / 'rkt'}"]
        image = subprocess.run([*rkt, "--insecure-options=image", "fetch", str(aci)],
                               check=True, capture_output=True, text=True).stdout.strip()
        subprocess.run(["runc", "spec"],
                       cwd=work / "bundle", check=True)
        cfg = json.loads((work / "bundle" / "config.json").read_text())
        cfg["process"]["args"] = ["/bin/true"]
        cfg["process"]["terminal"] = False
        if opts.net == "host":
            cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"]
                                          if n["type"] != "network"]
        (work / "bundle" / "config.json").write_text(json.dumps(cfg))

        rkt_cmd = [*rkt, "run", f"--net={opts.net}", image]
        podman_cmd = ["podman", "--runtime=runc", "run", "--rm", f"--network={opts.net}",
                      "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                      "--rootfs", str(rootfs), "/bin/true"]
        results = {
            "rkt": timed(rkt_cmd, opts.runs),
            "runc": timed([], opts.runs, cwd=work / "bundle",
                          argv_for=lambda i: ["runc", "run", f"bench-{os.getpid()}-{i}"]),
            "podman": timed(podman_cmd, opts.runs),
        }
        subprocess.run([*rkt, "gc", "--grace-period=0s"], capture_output=True)
    med = {k: statistics.median(v) * 1000 for k, v in results.items()}
    for k, v in results.items():
        print(f"{k:<7} median {med[k]:7.1f} ms   min {min(v) * 1000:7.1f} ms   "
              f"({len(v)} runs)")
    print(f"rkt / runc   = {med['rkt'] / med['runc']:.2f}x   (goal: <= 3x)")
    print(f"rkt / podman = {med['rkt'] / med['podman']:.2f}x   (goal: < 1x)")
    print("\n| net | rkt ms | runc ms | podman ms | rkt/runc | rkt/podman |")
    print(f"| {opts.net} | {med['rkt']:.0f} | {med['runc']:.0f} | {med['podman']:.0f} | "
          f"{med['rkt'] / med['runc']:.2f} | {med['rkt'] / med['podman']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
