"""`rkt run` of /bin/true in a VM pod vs a bare QEMU boot of the same kernel.

The bare boot uses the same kernel, initramfs, machine type, accelerator, vCPUs and
memory, with `rkt.probe=1` on the command line: the guest init powers off at once
(before loading modules or mounting anything). Prints both times, their ratio (goal
<= 1.15), and the host RSS of one idle VM pod (goal <= 64 MiB under TCG).

    sudo .venv/bin/python bench/kvm_boot.py [--runs 3] [--jail]

--jail adds the cost of QEMU's confinement (stage1/kvm/jail.py) measured side by side on
this tree: `rkt run` with and without it (PYRKT_KVM_JAIL=off), interleaved run by run,
and the launcher alone (rkt-jail with a pod's file view starting `qemu -version`, against
`qemu -version`, 20 each, interleaved).
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

import kvm_helpers as kh

from pyrkt.linux import ns, prctl
from pyrkt.stage1.build.aci import Flavor, Hypervisor, build_stage1_aci
from pyrkt.stage1.kvm import accel
from pyrkt.stage1.kvm.hypervisors.qemu import Qemu
from pyrkt.stage1.kvm.runner import TCG_TB_MIB, host_cpus, kernel_cmdline
from pyrkt.stage1.kvm.sizing import vm_size
from pyrkt.stage1.kvm.vm import VmPlan


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def guest_ram_kib(pid: int, memory_mib: int) -> int:
    """Resident KiB of QEMU's guest RAM mapping (the anonymous one of the VM's size)."""
    size, out, in_ram = memory_mib * 1024, 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if line.startswith("Size:"):
            in_ram = int(line.split()[1]) == size
        elif line.startswith("Rss:") and in_ram:
            out = max(out, int(line.split()[1]))
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds idle before the RSS")
    ap.add_argument("--jail", action="store_true", help="also the confinement's cost")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kvm-bench-"))
    try:
        return bench(work, a)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench(work: Path, a: argparse.Namespace) -> int:
    stage1 = build_stage1_aci(Flavor.KVM, work / "s1", Hypervisor.QEMU)
    image = kh.busybox_aci(work / "aci")
    with tarfile.open(stage1) as tar:
        for name in ("rootfs/kvm/vmlinuz", "rootfs/kvm/initrd.img", "rootfs/kvm/kernel-release"):
            tar.extract(name, work, filter="data")
    kernel, initrd = work / "rootfs/kvm/vmlinuz", work / "rootfs/kvm/initrd.img"
    decision = accel.decide(kernel, initrd, work / "cache")
    env = dict(os.environ, **{accel.ENV_FORCE: decision.accel.value})
    rkt = [sys.executable, "-m", "pyrkt", f"--dir={work / 'rkt'}"]
    run = [*rkt, "run", "--insecure-options=image", "--net=none", f"--stage1-path={stage1}",
           str(image), "--exec", "/bin/true"]
    # The same VM as the pod's: one app without limits.
    size = vm_size([kh.app("true", "/bin/true")], host_cpus())
    bare_plan = VmPlan(kernel=kernel, initrd=initrd,
                       cmdline=(*kernel_cmdline(False, False), "rkt.probe=1"),
                       vcpus=size.vcpus, memory_mib=size.memory_mib, accel=decision.accel,
                       tcg_tb_mib=TCG_TB_MIB)
    bare = Qemu().argv(bare_plan)
    # The pod's QEMU runs without transparent huge pages (the runner sets it): the same
    # for the bare boot, so both run under the same host memory conditions.
    prctl.set_thp_disable()
    timed(run, env)  # warm: image import, page cache
    pod_times, bare_times = [], []
    for _ in range(a.runs):
        bare_times.append(timed(bare, env))
        pod_times.append(timed(run, env))
    pod_t, bare_t = statistics.median(pod_times), statistics.median(bare_times)
    print(f"accelerator: {decision.accel} ({decision.reason}); load {os.getloadavg()}")
    release = (work / "rootfs/kvm/kernel-release").read_text().strip()
    print(f"guest kernel {release}; VM: {size.describe()}, machine pc, {a.runs} runs, median")
    print(f"rkt run /bin/true (VM pod): {pod_t:.2f} s  {[round(t, 2) for t in pod_times]}")
    print(f"bare QEMU boot+poweroff:    {bare_t:.2f} s  {[round(t, 2) for t in bare_times]}")
    print(f"ratio: {pod_t / bare_t:.2f} (goal <= 1.15); of the fastest runs: "
          f"{min(pod_times) / min(bare_times):.2f} (less exposed to the shared cores' load)")

    if a.jail:
        jail_cost(run, env, a.runs, work / "rkt")
    uuid_file = work / "uuid"
    idle = subprocess.Popen([*rkt, "run", "--insecure-options=image", "--net=none",
                             f"--stage1-path={stage1}", f"--uuid-file-save={uuid_file}",
                             str(image), "--exec", "/bin/sleep", "--", "3600"],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        started = None
        while time.monotonic() < deadline and started is None:
            uuid = uuid_file.read_text().strip() if uuid_file.exists() else ""
            for pod in kh.pod_dirs(work / "rkt"):
                if uuid and pod.name == uuid and (pod / "kvm/ctl/started").exists():
                    started = pod
            time.sleep(0.2)
        if started is None:
            print("idle pod did not start")
            return 1
        time.sleep(a.settle)  # free page reporting: 2 s after the frees, then the reports
        qemu_pid = int((started / "pid").read_text())
        q, s1 = rss_kib(qemu_pid), rss_kib(idle.pid)
        ram = guest_ram_kib(qemu_pid, size.memory_mib)
        waiter = Path(f"/proc/{idle.pid}/exe").resolve().name
        print(f"idle VM pod RSS ({a.settle:.0f} s after start): QEMU {q / 1024:.1f} MiB "
              f"(guest RAM {ram / 1024:.1f}, the rest {(q - ram) / 1024:.1f}) + waiter "
              f"({waiter}) {s1 / 1024:.1f} MiB = {(q + s1) / 1024:.1f} MiB (goal <= 64 MiB)")
        subprocess.run([*rkt, "stop", "--force", uuid_file.read_text().strip()], env=env,
                       check=False, capture_output=True)
    finally:
        if idle.poll() is None:
            idle.kill()
        idle.wait()
        subprocess.run([*rkt, "gc", "--grace-period=0s"], env=env, check=False,
                       capture_output=True)
    return 0


def jail_cost(run: list[str], env: dict[str, str], runs: int, rkt_dir: Path) -> None:
    """`rkt run` confined and not, interleaved; then the launcher alone."""
    off = dict(env, PYRKT_KVM_JAIL="off")
    jailed, free, cpu_j, cpu_f = [], [], [], []
    for _ in range(runs):
        for e, wall, cpu in ((off, free, cpu_f), (env, jailed, cpu_j)):
            c0 = _children_cpu()
            wall.append(timed(run, e))
            cpu.append(_children_cpu() - c0)
    j, f = statistics.median(jailed), statistics.median(free)
    cj, cf = statistics.median(cpu_j), statistics.median(cpu_f)
    diffs = statistics.median(a - b for a, b in zip(jailed, free, strict=True))
    print(f"rkt run /bin/true, QEMU confined: {j:.2f} s {[round(t, 2) for t in jailed]}, "
          f"CPU {cj:.2f} s")
    print(f"rkt run /bin/true, unconfined:    {f:.2f} s {[round(t, 2) for t in free]}, "
          f"CPU {cf:.2f} s")
    print(f"confinement ({runs} interleaved pairs): medians {1000 * (j - f):+.0f} ms "
          f"({100 * (j - f) / f:+.1f}%), median of the pairs' differences {1000 * diffs:+.0f} "
          f"ms, CPU time (all processes of the pod) {1000 * (cj - cf):+.0f} ms "
          f"({100 * (cj - cf) / cf:+.1f}%)")
    confined = [p for p in kh.pod_dirs(rkt_dir) if "rkt-jail" in _cmdline(p)]
    if not confined:
        return
    argv = shlex.split(_cmdline(confined[-1]))
    i = argv.index("--")
    launcher, skip = [], 0
    for x in argv[:i + 1]:  # without the pod's (gone) cgroups and seccomp fd
        if skip:
            skip -= 1
        elif x in ("--cgroup", "--seccomp-fd"):
            skip = 1
        else:
            launcher.append(x)
    version = [argv[i + 1], "-version"]
    lj, lf = [], []
    for _ in range(20):
        lf.append(timed(version, env))
        with ns.children_in_new_pid_namespace():
            t0 = time.perf_counter()
            p = subprocess.Popen([*launcher, *version], cwd=confined[-1], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p.wait()
        lj.append(time.perf_counter() - t0)
    print(f"launcher alone: qemu -version {1000 * statistics.median(lf):.1f} ms, through "
          f"rkt-jail {1000 * statistics.median(lj):.1f} ms (medians of 20, interleaved)")


def _children_cpu() -> float:
    """User + system seconds of every waited-for descendant so far (QEMU included: rkt
    run waits for it)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _cmdline(pod: Path) -> str:
    p = pod / "kvm/cmdline"
    return p.read_text() if p.exists() else ""


if __name__ == "__main__":
    sys.exit(main())
