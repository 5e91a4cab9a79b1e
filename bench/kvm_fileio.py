"""File I/O inside a pod: container pod vs VM pod on 9p vs VM pod on disks.

The same image and the same work in each pod, timed inside the pod by `fileio`
(bench/fileio.c, CLOCK_MONOTONIC), so the VM's boot is not counted: extract a 50 MiB
tarball of many small files, `find` over the extracted tree, write 200 files with an
fsync each, read a 200 MiB file sequentially. Each kind runs --runs times, in turn;
the medians and each VM kind's ratio to the container pod are printed (goal for the VM
pod on disks: <= 2x on every item), with QEMU's peak RSS during the work. The 9p pod
runs --runs-9p times only: extracting the tarball over 9p takes minutes under TCG.

Then the start: `rkt run /bin/true` (busybox image) on 9p vs on disks, alternating,
booted (`--kvm-template=off`) and restored from a VM template (`on`: the disks behind
the template's disk slots), and the first-use cost of an image's filesystem image
(mkfs.ext4 -d of its tree), for the busybox image and the bench image.

    sudo .venv/bin/python bench/kvm_fileio.py [--runs 3] [--runs-9p 1] [--start-runs 9]
                                              [--start-only]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

import kvm_helpers as kh

from pyrkt.image import fsimage
from pyrkt.stage1.build.aci import Flavor, Hypervisor, build_stage1_aci

HERE = Path(__file__).resolve().parent
SMALL_FILES = 5000  # x 10 KiB: a 50 MiB tarball
BIG_MIB = 200
WORK = """
fileio run extract tar -xf /data/small.tar -C /tmp
fileio run find find /tmp/small
fileio fsync fsync /tmp/sync 200 4096
fileio read read /data/big
"""
ITEMS = ("extract", "find", "fsync", "read")
KINDS = ("container", "vm-9p", "vm-block")


def bench_image(work: Path) -> Path:
    """busybox + fileio + /data/small.tar (50 MiB, 5000 files) + /data/big (200 MiB)."""
    root = work / "rootfs"
    kh.busybox_rootfs(root)
    for applet in subprocess.run([str(kh.BUSYBOX), "--list"], capture_output=True,
                                 text=True, check=True).stdout.split():
        if not os.path.lexists(root / "bin" / applet):
            (root / "bin" / applet).symlink_to("busybox")
    subprocess.run(["gcc", "-O2", "-static", "-o", str(root / "bin" / "fileio"),
                    str(HERE / "fileio.c")], check=True)
    data = root / "data"
    data.mkdir()
    rnd = random.Random(1)
    src = work / "small"
    for i in range(SMALL_FILES):
        d = src / f"d{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}").write_bytes(rnd.randbytes(10 * 1024))
    with tarfile.open(data / "small.tar", "w") as t:
        t.add(src, arcname="small")
    shutil.rmtree(src)
    with open(data / "big", "wb") as f:
        for _ in range(BIG_MIB):
            f.write(rnd.randbytes(1 << 20))
    (work / "manifest").write_text(kh.ACI_MANIFEST)
    aci = work / "bench.aci"
    with tarfile.open(aci, "w") as t:
        t.add(work / "manifest", arcname="manifest")
        t.add(root, arcname="rootfs")
    return aci


class Rkt:
    def __init__(self, d: Path, stage1: Path) -> None:
        self.dir, self.stage1 = d, stage1

    def argv(self, kind: str, *args: str, template: str = "off") -> list[str]:
        a = [sys.executable, "-m", "pyrkt", f"--dir={self.dir}", "run",
             "--insecure-options=image", "--net=none"]
        if kind != "container":
            a += [f"--stage1-path={self.stage1}", f"--kvm-template={template}",
                  f"--kvm-rootfs={'block' if kind == 'vm-block' else '9p'}"]
        return a + list(args)

    def gc(self) -> None:
        subprocess.run([sys.executable, "-m", "pyrkt", f"--dir={self.dir}", "gc",
                        "--grace-period=0s"], capture_output=True, check=False)


def peak_qemu_rss_mib(d: Path, stop: threading.Event, out: list[int]) -> None:
    """The largest VmRSS of a QEMU of a pod under d while the work runs."""
    peak = 0
    while not stop.is_set():
        for pid in kh.qemu_pids_for(str(d)):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        peak = max(peak, int(line.split()[1]) // 1024)
            except OSError:
                pass
        stop.wait(0.2)
    out.append(peak)


def work_once(rkt: Rkt, kind: str, image: Path) -> tuple[dict[str, float], int]:
    stop, peak = threading.Event(), []  # type: ignore[var-annotated]
    watcher = threading.Thread(target=peak_qemu_rss_mib, args=(rkt.dir, stop, peak))
    watcher.start()
    try:
        r = subprocess.run(rkt.argv(kind, str(image), "--exec", "/bin/sh", "--", "-c", WORK),
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
    finally:
        stop.set()
        watcher.join()
    if r.returncode != 0 or "FAILED" in r.stdout:
        raise SystemExit(f"{kind}: rc {r.returncode}\n{r.stdout}\n{r.stderr}")
    times = {}
    for line in r.stdout.splitlines():
        label, _, secs = line.partition(" ")
        if label in ITEMS:
            times[label] = float(secs)
    rkt.gc()
    return times, peak[0]


def start_once(rkt: Rkt, kind: str, image: Path, template: str) -> tuple[float, float]:
    """Wall time and CPU time (rkt, QEMU and all it waited for: less sensitive to the
    machine's load than the wall time) of `rkt run /bin/true`."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(rkt.argv(kind, str(image), "--exec", "/bin/true", template=template),
                   check=True,
                   capture_output=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def first_use(tree_root: Path) -> float:
    """mkfs time of the filesystem image of the tree (rebuilt into a temporary file)."""
    with tempfile.TemporaryDirectory() as td:
        t0 = time.perf_counter()
        fsimage.build(tree_root / "rootfs", Path(td) / "x.ext4")
        return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--runs-9p", type=int, default=1)  # one takes 5-10 min under TCG
    ap.add_argument("--start-runs", type=int, default=7)
    ap.add_argument("--start-only", action="store_true", help="no file I/O part")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyrkt-fileio-") as tmp:
        base = Path(tmp)
        stage1 = build_stage1_aci(Flavor.KVM, base / "stage1", Hypervisor.QEMU)
        rkt = Rkt(base / "rkt", stage1)
        if not args.start_only:
            file_io(rkt, bench_image(base / "img"), args.runs, args.runs_9p)
        busybox = kh.busybox_aci(base / "bb")
        for template in ("off", "on"):
            starts(rkt, busybox, template, args.start_runs)
        for tree in sorted((rkt.dir / "cas" / "trees").iterdir()):
            size = sum(1 for _ in (tree / "rootfs").rglob("*"))
            print(f"first use: filesystem image of {tree.name[:19]} ({size} entries): "
                  f"{first_use(tree):.2f}s")
    return 0


def file_io(rkt: Rkt, image: Path, runs: int, runs_9p: int) -> None:
    for kind in ("container", "vm-block"):  # warm: the render, the ext4 image, caches
        work_once(rkt, kind, image)
    results: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
    rss: dict[str, list[int]] = {k: [] for k in KINDS}
    for n in range(max(runs, runs_9p)):
        for kind in KINDS:
            if n >= (runs_9p if kind == "vm-9p" else runs):
                continue
            t, peak = work_once(rkt, kind, image)
            results[kind].append(t)
            rss[kind].append(peak)
    med = {k: {i: statistics.median(r[i] for r in results[k]) for i in ITEMS}
           for k in KINDS}
    print(f"file I/O inside the pod, median of {runs} ({runs_9p} on 9p) "
          "(seconds; ratio to container)")
    print(f"{'item':8} " + " ".join(f"{k:>18}" for k in KINDS))
    for i in ITEMS:
        c = med["container"][i]
        cells = [f"{med[k][i]:8.3f} ({med[k][i] / c:5.1f}x)" for k in KINDS]
        print(f"{i:8} " + " ".join(f"{x:>18}" for x in cells))
    for k in KINDS[1:]:
        print(f"{k}: QEMU peak RSS during the work {statistics.median(rss[k])} MiB")


def starts(rkt: Rkt, busybox: Path, template: str, runs: int) -> None:
    """`rkt run /bin/true` on 9p and on disks, alternating, with --kvm-template=template."""
    for kind in ("vm-9p", "vm-block"):
        start_once(rkt, kind, busybox, template)  # warm (on: makes the template)
    times: dict[str, list[tuple[float, float]]] = {"vm-9p": [], "vm-block": []}
    for _ in range(runs):
        for kind in times:
            times[kind].append(start_once(rkt, kind, busybox, template))
        if template == "off":  # a gc removes the unused templates: the next pod remakes one
            rkt.gc()
    rkt.gc()
    med_wall, med_cpu = {}, {}
    for kind, s in times.items():
        med_wall[kind] = statistics.median(w for w, _ in s)
        med_cpu[kind] = statistics.median(c for _, c in s)
        print(f"rkt run /bin/true {kind}, template {template}: wall median "
              f"{med_wall[kind]:.2f}s  runs {' '.join(f'{w:.2f}' for w, _ in s)}; "
              f"CPU median {med_cpu[kind]:.2f}s")
    print(f"start ratio block/9p, template {template}: wall "
          f"{med_wall['vm-block'] / med_wall['vm-9p']:.2f}, "
          f"CPU {med_cpu['vm-block'] / med_cpu['vm-9p']:.2f} (goal <= 1.10)")


if __name__ == "__main__":
    sys.exit(main())
