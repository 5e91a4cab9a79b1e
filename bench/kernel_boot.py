"""Guest kernel start: the tailored kernel vs the distro kernel, same script, same VM.

    .venv/bin/python bench/kernel_boot.py [--runs 5] [--machine pc] [--memory 256]
    .venv/bin/python bench/kernel_boot.py --pod [--runs 5]

Without --pod, each run boots QEMU (TCG here; -accel kvm where it works) with a busybox initramfs
whose init does what a kvm pod's init must do before it can start apps: load the
kernel modules the guest needs (distro kernel only: virtio-pci, 9p, virtio-net,
virtio-console, overlay, as `modprobe --show-depends` orders them), mount proc and
the pod's 9p share, then report `/proc/uptime` and `/proc/meminfo` and power off.

Prints, per kernel, the median wall time from QEMU start to QEMU exit, the median
guest uptime when the share was mounted ("ready"), the guest memory in use at that
point (MemTotal - MemAvailable) and the kernel's MemTotal; then the ratios
(distro / tailored: above 1 means the tailored kernel is faster / smaller).
With --pod, the same comparison end to end: two stage1-kvm images are built (`rkt
stage1 build --kernel=tailored` and `--kernel=distro`), then `rkt run --net=none` of a
busybox app that prints the guest's /proc/meminfo is timed, alternating the two
stage1s (wall time of the whole `rkt run`; memory used as the app sees it).

The tailored kernel must be built already (`rkt stage1 kernel`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pyrkt.stage1.build import kernel

GUEST_MODULES = ("virtio_pci", "virtio_console", "9pnet_virtio", "9p", "virtio_net", "overlay")
INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /share
/bin/busybox mount -t proc proc /proc
for m in $(/bin/busybox cat /modules.order); do /bin/busybox insmod /lib/modules/$m; done
/bin/busybox mount -t 9p -o trans=virtio,version=9p2000.L share /share
/bin/busybox echo "READY $(/bin/busybox cat /proc/uptime)"
/bin/busybox echo "MEM $(/bin/busybox grep -E 'MemTotal|MemAvailable' /proc/meminfo | \
/bin/busybox tr -s ' ' | /bin/busybox tr '\\n' ' ')"
/bin/busybox echo "SHARE $(/bin/busybox cat /share/hello)"
/bin/busybox poweroff -f
"""


@dataclass(frozen=True)
class Boot:
    wall_s: float
    ready_s: float
    used_kib: int
    total_kib: int


def module_files(release: str) -> list[Path]:
    files: list[Path] = []
    for mod in GUEST_MODULES:
        out = subprocess.run(["modprobe", "-S", release, "--show-depends", mod],
                             capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if parts and parts[0] == "insmod" and Path(parts[1]) not in files:
                files.append(Path(parts[1]))
    return files


def initramfs(out: Path, modules: list[Path]) -> Path:
    root = out.with_suffix(".d")
    (root / "bin").mkdir(parents=True)
    (root / "lib/modules").mkdir(parents=True)
    shutil.copy2("/usr/bin/busybox", root / "bin/busybox")
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    for m in modules:
        shutil.copy2(m, root / "lib/modules" / m.name)
    (root / "modules.order").write_text("".join(m.name + "\n" for m in modules))
    names = [str(p.relative_to(root)) for p in sorted(root.rglob("*"))]
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root,
                          input="\n".join(names).encode() + b"\n", capture_output=True,
                          check=True).stdout
    out.write_bytes(gzip.compress(cpio, compresslevel=6))
    return out


def boot(image: Path, initrd: Path, share: Path, machine: str, memory: int) -> Boot:
    argv = [
        "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-nographic",
        "-M", machine, "-accel", "tcg", "-m", str(memory), "-smp", "1", "-no-reboot",
        "-kernel", str(image), "-initrd", str(initrd),
        "-append", "console=ttyS0 quiet panic=-1 tsc_early_khz=2000000",
        "-serial", "stdio",
        "-fsdev", f"local,id=fs0,path={share},security_model=none",
        "-device", "virtio-9p-pci,fsdev=fs0,mount_tag=share",
    ]  # fmt: skip
    if machine == "microvm":
        argv[argv.index("microvm")] = "microvm,pcie=on,pit=on,pic=on,rtc=on"
    start = time.perf_counter()
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                        stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    ready = re.search(r"READY ([\d.]+)", cp.stdout)
    mem = re.search(r"MemTotal: (\d+) kB MemAvailable: (\d+) kB", cp.stdout)
    if not ready or not mem or "SHARE hello" not in cp.stdout:
        sys.exit(f"boot failed: {' '.join(argv)}\n{cp.stdout}\n{cp.stderr}")
    total, avail = int(mem.group(1)), int(mem.group(2))
    return Boot(wall, float(ready.group(1)), total - avail, total)


def pod_app(work: Path) -> Path:
    root = work / "app"
    (root / "rootfs/bin").mkdir(parents=True)
    shutil.copy2("/usr/bin/busybox", root / "rootfs/bin/busybox")
    (root / "rootfs/bin/sh").symlink_to("busybox")
    manifest = {
        "acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/bootbench",
        "labels": [{"name": "version", "value": "1"}, {"name": "os", "value": "linux"},
                   {"name": "arch", "value": "amd64"}],
        "app": {"exec": ["/bin/busybox", "sh", "-c",
                         "/bin/busybox grep -E 'MemTotal|MemAvailable' /proc/meminfo"],
                "user": "0", "group": "0"},
    }  # fmt: skip
    (root / "manifest").write_text(json.dumps(manifest))
    aci = work / "bootbench.aci"
    with tarfile.open(aci, "w") as tar:
        tar.add(root / "manifest", arcname="manifest")
        tar.add(root / "rootfs", arcname="rootfs")
    return aci


def pod_run(stage1: Path, app: Path, rkt_dir: Path) -> Boot:
    argv = [sys.executable, "-m", "pyrkt", f"--dir={rkt_dir}", "--insecure-options=image",
            "run", "--net=none", f"--stage1-path={stage1}", str(app)]  # fmt: skip
    start = time.perf_counter()
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                        stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    total = re.search(r"MemTotal:\s+(\d+) kB", cp.stdout)
    avail = re.search(r"MemAvailable:\s+(\d+) kB", cp.stdout)
    if cp.returncode != 0 or not total or not avail:
        sys.exit(f"pod failed ({cp.returncode}): {' '.join(argv)}\n{cp.stdout}\n{cp.stderr}")
    return Boot(wall, 0.0, int(total.group(1)) - int(avail.group(1)), int(total.group(1)))


def pod_main(runs: int) -> dict[str, list[Boot]]:
    with tempfile.TemporaryDirectory(prefix="pyrkt-bench-") as tmp:
        base = Path(tmp)
        app = pod_app(base)
        stage1s: dict[str, Path] = {}
        for kind in ("tailored", "distro"):
            out = base / kind
            subprocess.run([sys.executable, "-m", "pyrkt", "stage1", "build", "--flavors=kvm",
                            f"--kernel={kind}", f"--output={out}"], check=True,
                           capture_output=True)  # fmt: skip
            stage1s[kind] = out / "stage1-kvm.aci"
        # one warm-up run each: image import, render, accelerator probe cache
        for s1 in stage1s.values():
            pod_run(s1, app, base / "rkt")
        results: dict[str, list[Boot]] = {k: [] for k in stage1s}
        for _ in range(runs):
            for kind, s1 in stage1s.items():
                results[kind].append(pod_run(s1, app, base / "rkt"))
        subprocess.run([sys.executable, "-m", "pyrkt", f"--dir={base / 'rkt'}", "gc",
                        "--grace-period=0s"], capture_output=True, check=False)  # fmt: skip
        return results


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pod", action="store_true", help="time whole `rkt run` VM pods")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--machine", default="pc", choices=["pc", "microvm"])
    ap.add_argument("--memory", type=int, default=256)
    args = ap.parse_args()
    tailored = kernel.cached_tailored_kernel()
    if tailored is None:
        sys.exit("the tailored kernel is not built: run `rkt stage1 kernel` first")
    distro = kernel.distro_kernel()
    images = {"tailored": tailored.image, "distro": distro.image}
    if args.pod:
        pods = pod_main(args.runs)
        print(f"rkt run --net=none, kvm stage1 (-M pc), runs={args.runs} accel=tcg")
        return report(pods, images)
    with tempfile.TemporaryDirectory(prefix="pyrkt-bench-") as tmp:
        base = Path(tmp)
        share = base / "share"
        share.mkdir()
        (share / "hello").write_text("hello\n")
        kernels = {
            "tailored": (tailored.image, initramfs(base / "t.img", [])),
            "distro": (distro.image, initramfs(base / "d.img", module_files(distro.release))),
        }
        results: dict[str, list[Boot]] = {k: [] for k in kernels}
        for _ in range(args.runs):  # alternate, so that machine noise hits both alike
            for name, (image, initrd) in kernels.items():
                results[name].append(boot(image, initrd, share, args.machine, args.memory))
    print(f"machine={args.machine} memory={args.memory}MiB runs={args.runs} accel=tcg")
    return report(results, images)


def report(results: dict[str, list[Boot]], images: dict[str, Path]) -> int:
    med: dict[str, dict[str, float]] = {}
    for name, boots in results.items():
        m = {
            "wall": statistics.median(b.wall_s for b in boots),
            "ready": statistics.median(b.ready_s for b in boots),
            "used": statistics.median(b.used_kib for b in boots) / 1024,
            "total": statistics.median(b.total_kib for b in boots) / 1024,
        }
        med[name] = m
        image = images[name]
        print(f"{name:9} wall {m['wall']:.2f}s  guest-ready {m['ready']:.2f}s  "
              f"used {m['used']:.1f} MiB  MemTotal {m['total']:.1f} MiB  "
              f"image {image.stat().st_size / 1e6:.1f} MB")
    t, d = med["tailored"], med["distro"]
    ready = f"guest-ready {d['ready'] / t['ready']:.2f}x  " if t["ready"] else ""
    print(f"ratio distro/tailored: wall {d['wall'] / t['wall']:.2f}x  {ready}"
          f"memory used {d['used'] / t['used']:.2f}x  "
          f"(MemTotal +{t['total'] - d['total']:.1f} MiB for tailored)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
