"""`ctr run --rm` of /bin/true through containerd's runc shim with rkt-runtime (a VM per
container) vs with runc (namespaces), and vs the same VM pod through `rkt run` (the
kvm stage1, no containerd); prints the medians and the ratios. Needs root, containerd,
ctr, runc, QEMU.

    sudo .venv/bin/python bench/oci_run.py [--runs N]

A containerd of its own (tests/support/oci.py: private root, state and socket, stopped
by PID) with one busybox image; the three are run in turn, round after round, so the
machine's load weighs on each alike. The accelerator is decided once (cached probe).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

import kvm_helpers as kh

from pyrkt.stage1.build.aci import Flavor, Hypervisor, build_stage1_aci
from pyrkt.stage1.kvm import accel
from support.oci import RUNTIME, busybox_archive, containerd

IMAGE = "localhost/busybox:1"


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="oci-bench-"))
    try:
        return bench(work, a.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench(work: Path, n: int) -> int:
    stage1 = build_stage1_aci(Flavor.KVM, work / "s1", Hypervisor.QEMU)
    image = kh.busybox_aci(work / "aci")
    import tarfile

    with tarfile.open(stage1) as tar:
        for name in ("rootfs/kvm/vmlinuz", "rootfs/kvm/initrd.img"):
            tar.extract(name, work, filter="data")
    decision = accel.decide(work / "rootfs/kvm/vmlinuz", work / "rootfs/kvm/initrd.img",
                            work / "cache")
    env = dict(os.environ, **{accel.ENV_FORCE: decision.accel.value})
    rkt = [sys.executable, "-m", "pyrkt", f"--dir={work / 'rkt'}", "run",
           "--insecure-options=image", "--net=none", f"--stage1-path={stage1}", str(image),
           "--exec", "/bin/true"]
    archive = busybox_archive(work / "image")
    with containerd(work / "c") as c:
        assert c.ctr("image", "import", "--base-name", "localhost/busybox",
                     str(archive)).returncode == 0
        ctr = ["ctr", "--address", c.address, "-n", c.namespace, "run", "--rm"]
        names = iter(range(10**6))

        def with_runtime(binary: str) -> list[str]:
            return [*ctr, "--runc-binary", binary, IMAGE, f"b{next(names)}", "/bin/true"]

        runc = shutil.which("runc") or "runc"
        timed(with_runtime(str(RUNTIME)), env)  # warm: snapshots, page cache, probe
        timed(with_runtime(runc), env)
        timed(rkt, env)
        ours, theirs, pod = [], [], []
        for _ in range(n):
            ours.append(timed(with_runtime(str(RUNTIME)), env))
            theirs.append(timed(with_runtime(runc), env))
            pod.append(timed(rkt, env))
    o, t, p = (statistics.median(x) for x in (ours, theirs, pod))
    print(f"accelerator: {decision.accel} ({decision.reason}); load {os.getloadavg()}")
    print(f"{n} runs each, median (s):")
    print(f"  ctr run --rm /bin/true, rkt-runtime (VM): {o:.2f}  {[round(x, 2) for x in ours]}")
    print(f"  ctr run --rm /bin/true, runc:             {t:.2f}  {[round(x, 2) for x in theirs]}")
    print(f"  rkt run /bin/true, kvm stage1 (VM pod):  {p:.2f}  {[round(x, 2) for x in pod]}")
    print(f"ratios: rkt-runtime / runc {o / t:.1f}x; rkt-runtime / rkt run {o / p:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
