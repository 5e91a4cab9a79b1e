"""Two kernel images of the guest booted bare, side by side: e.g. the tailored kernel as it
is cached now and the same kernel built another way (another compression, another
option), to see what a kernel build choice costs or saves at every cold boot.

    .venv/bin/python bench/kernel_images.py NAME=BZIMAGE NAME=BZIMAGE [--runs 10]
        [--raw-initrd]

Each run boots QEMU (the accelerator rkt would pick here, TCG where KVM cannot boot a
guest) with the image, the stage1's own initramfs (built here, as `rkt stage1 build`
does) and a pod's kernel command line plus `rkt.probe=1` (the guest init powers off at
once), a pod's VM size (2 vCPUs, 256 MiB), as `bench/kvm_boot.py`'s bare boot; the
images alternate, which goes first alternating run by run, so that both see the same
minutes of a shared machine. Prints each image's median wall time (QEMU start to exit)
and the median of the per-run ratios of the second image to the first. --raw-initrd
boots the second image with the initramfs uncompressed (what gzip's decompression in
the guest costs).

For a changed kernel config: build the other image from the kernel source with the
changed `.config` (`make bzImage`, minutes), e.g. in a copy of a tailored build tree.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from pyrkt.linux import prctl
from pyrkt.stage1.build.aci import Flavor, Hypervisor, build_stage1_aci
from pyrkt.stage1.kvm import accel
from pyrkt.stage1.kvm.hypervisors.qemu import Qemu
from pyrkt.stage1.kvm.runner import TCG_TB_MIB, kernel_cmdline
from pyrkt.stage1.kvm.vm import VmPlan


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs=2, metavar="NAME=BZIMAGE")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--raw-initrd", action="store_true",
                    help="the second image with the initramfs uncompressed")
    a = ap.parse_args()
    images = [(name, Path(path)) for name, _, path in (i.partition("=") for i in a.images)]
    work = Path(tempfile.mkdtemp(prefix="kernel-images-"))
    try:
        stage1 = build_stage1_aci(Flavor.KVM, work / "s1", Hypervisor.QEMU)
        with tarfile.open(stage1) as tar:
            tar.extract("rootfs/kvm/initrd.img", work, filter="data")
        initrd = work / "rootfs/kvm/initrd.img"
        initrds = [initrd, initrd]
        if a.raw_initrd:
            initrds[1] = work / "initrd.cpio"
            initrds[1].write_bytes(gzip.decompress(initrd.read_bytes()))
        decision = accel.decide(images[0][1], initrd, work / "cache")
        prctl.set_thp_disable()  # as a pod's QEMU (stage1/kvm/launch.py)
        times: list[list[float]] = [[], []]
        for run in range(a.runs):
            for i in (0, 1) if run % 2 == 0 else (1, 0):
                plan = VmPlan(kernel=images[i][1], initrd=initrds[i],
                              cmdline=(*kernel_cmdline(False, False), "rkt.probe=1"),
                              vcpus=2, memory_mib=256, accel=decision.accel,
                              tcg_tb_mib=TCG_TB_MIB)
                t0 = time.perf_counter()
                subprocess.run(Qemu().argv(plan), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               check=True, timeout=120)
                times[i].append(time.perf_counter() - t0)
        print(f"accelerator: {decision.accel}; {a.runs} runs each, alternating")
        for (name, path), ts, rd in zip(images, times, initrds, strict=True):
            print(f"{name}: {path} ({path.stat().st_size} bytes), initramfs "
                  f"{rd.stat().st_size} bytes: median {statistics.median(ts):.3f} s "
                  f"{[round(t, 3) for t in ts]}")
        ratio = statistics.median(b / f for f, b in zip(*times, strict=True))
        print(f"{images[1][0]} / {images[0][0]}, run by run: median {ratio:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
