"""`rkt run` of /bin/true in a VM pod vs a bare QEMU boot of the same kernel, and what
idle VM pods hold, with and without VM templates (stage1/kvm/templates/).

Each round runs, side by side:
- the bare boot: the same kernel, initramfs, machine type, accelerator, vCPUs and
  memory, with `rkt.probe=1` on the command line (the guest init powers off at once,
  before loading modules or mounting anything);
- a booted pod (`--kvm-template=off`);
- the first pod of its shape (the template removed first by `rkt gc --grace-period=0s`:
  it boots the template, saves it, and is restored from it);
- a pod restored from the template the previous one made.
It prints medians, each pod's ratio to the bare boot (goal for a restored pod <= 0.3,
and under 0.4 s for the whole `rkt run`), and the first pod's ratio to a booted one
(goal <= 1.3); and the CPU time of each (user + system of rkt, its waiter and QEMU),
which a loaded machine inflates less than the wall time. Then it starts N idle pods at
once (`sleep`), restored, and again booted, and prints their PSS per pod
(`/proc/PID/smaps_rollup` of each pod's QEMU and waiter, summed, divided by N; goal
<= 40 MiB restored) and RSS, and the host CPU their QEMUs use while the pods are idle
(per pod, in the second half of --settle).

    sudo .venv/bin/python bench/kvm_boot.py [--runs 5] [--pods 8] [--jail] [--app-uptime]
                                            [--peer SRC] [--rootfs block|9p]

--jail adds the cost of QEMU's confinement (stage1/kvm/jail.py) measured side by side on
this tree: `rkt run` with and without it (PYRKT_KVM_JAIL=off), interleaved run by run,
and the launcher alone (rkt-jail with a pod's file view starting `qemu -version`, against
`qemu -version`, 20 each, interleaved).

--bare-kernel BZIMAGE adds, each round, a bare boot of another image of the kernel (e.g. an
earlier build of the tailored kernel, from its cache folder), and the restored pod's
ratio to it.

--peer SRC times a booted pod of this tree against the same pod with the pyrkt whose
sources are at SRC (its own stage1 image, code and data dir, e.g. an older tree's `src`
for the before of a change), then a restored pod of each (each from its own template),
run by run, alternating which goes first, so that both see the same minutes of a shared
machine. --pods 0 leaves out the idle pods' memory. --rootfs passes --kvm-rootfs to
every pod (default: the stage1's default). --app-uptime adds the guest's uptime
when the app starts (the app: `cat /proc/uptime`), which leaves out the host's share of
a pod start.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

import kvm_helpers as kh
from _common import in_scratch

from pyrkt.linux import ns, prctl
from pyrkt.record import replace
from pyrkt.stage1.build.aci import Flavor, Hypervisor, build_stage1_aci
from pyrkt.stage1.kvm import accel, templates
from pyrkt.stage1.kvm.hypervisors.qemu import Qemu
from pyrkt.stage1.kvm.runner import TCG_TB_MIB, host_cpus, kernel_cmdline
from pyrkt.stage1.kvm.sizing import vm_size
from pyrkt.stage1.kvm.vm import VmPlan

MIB = 1024


CPU: dict[str, list[float]] = {}


def timed(argv: list[str], env: dict[str, str], what: str = "") -> float:
    """Wall seconds of argv; its CPU seconds (user + system of the whole tree it waited
    for: rkt, the waiter, QEMU) go to CPU[what]."""
    c0 = _children_cpu()
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    if what:
        CPU.setdefault(what, []).append(_children_cpu() - c0)
    return wall


def kib(pid: int, field: str, where: str = "smaps_rollup") -> int:
    for line in Path(f"/proc/{pid}/{where}").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pods", type=int, default=8, help="idle pods at once for the memory")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds idle before measuring")
    ap.add_argument("--jail", action="store_true", help="also the confinement's cost")
    ap.add_argument("--app-uptime", action="store_true",
                    help="also the guest's uptime when a booted pod's app starts")
    ap.add_argument("--peer", type=Path, help="another pyrkt's src folder, timed alongside")
    ap.add_argument("--bare-kernel", type=Path, metavar="BZIMAGE",
                    help="also a bare boot of this kernel image each round (e.g. an "
                         "earlier build of the tailored kernel)")
    ap.add_argument("--rootfs", choices=("block", "9p"),
                    help="the apps' rootfs of every pod (--kvm-rootfs; default: rkt's)")
    return in_scratch("kvm-bench-", bench, ap.parse_args())


def bench(work: Path, a: argparse.Namespace) -> int:
    stage1 = build_stage1_aci(Flavor.KVM, work / "s1", Hypervisor.QEMU)
    image = kh.busybox_aci(work / "aci")
    with tarfile.open(stage1) as tar:
        for name in ("rootfs/kvm/vmlinuz", "rootfs/kvm/initrd.img", "rootfs/kvm/kernel-release"):
            tar.extract(name, work, filter="data")
    kernel, initrd = work / "rootfs/kvm/vmlinuz", work / "rootfs/kvm/initrd.img"
    decision = accel.decide(kernel, initrd, work / "cache")
    env = dict(os.environ, **{accel.ENV_FORCE: decision.accel.value,
                              templates.ENV_TEMPLATE: "on"})
    # Each tree's modules compiled once (__pycache__), as an installed rkt's are: with
    # PYTHONDONTWRITEBYTECODE (set in some shells here) a tree edited since it was last
    # compiled recompiles the changed modules on every `rkt run` (tens of ms).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    rkt = [sys.executable, "-m", "pyrkt", f"--dir={work / 'rkt'}"]
    run = [*rkt, "run", "--insecure-options=image", "--net=none", f"--stage1-path={stage1}",
           *([f"--kvm-rootfs={a.rootfs}"] if a.rootfs else [])]
    true = [str(image), "--exec", "/bin/true"]
    gc = [*rkt, "gc", "--grace-period=0s"]
    # The same VM as the pod's: one app without limits.
    size = vm_size([kh.app("true", "/bin/true")], host_cpus())
    bare_plan = VmPlan(kernel=kernel, initrd=initrd,
                       cmdline=(*kernel_cmdline(False, False), "rkt.probe=1"),
                       vcpus=size.vcpus, memory_mib=size.memory_mib, accel=decision.accel,
                       tcg_tb_mib=TCG_TB_MIB)
    bare = Qemu().argv(bare_plan)
    other = Qemu().argv(replace(bare_plan, kernel=a.bare_kernel)) if a.bare_kernel else None
    # The pod's QEMU runs without transparent huge pages (the runner sets it): the same
    # for the bare boot, so both run under the same host memory conditions.
    prctl.set_thp_disable()
    timed([*run, "--kvm-template=off", *true], env)  # warm: image import, page cache
    times: dict[str, list[float]] = {"bare": [], "booted": [], "first": [], "restored": []}
    for _ in range(a.runs):
        times["bare"].append(timed(bare, env, "bare"))
        if other:
            times.setdefault("other", []).append(timed(other, env, "other"))
        times["booted"].append(timed([*run, "--kvm-template=off", *true], env, "booted"))
        subprocess.run(gc, env=env, check=True, capture_output=True)  # no template
        times["first"].append(timed([*run, *true], env, "first"))
        times["restored"].append(timed([*run, *true], env, "restored"))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"accelerator: {decision.accel} ({decision.reason}); load {os.getloadavg()}")
    release = (work / "rootfs/kvm/kernel-release").read_text().strip()
    print(f"guest kernel {release}; VM: {size.describe()}, machine pc, {a.runs} runs, median")
    cpu = {k: statistics.median(v) for k, v in CPU.items()}
    print(f"bare QEMU boot+poweroff:                          {med['bare']:.2f} s  "
          f"{_r(times['bare'])}  CPU {cpu['bare']:.2f} s")
    for k, what in (("booted", "booted (--kvm-template=off)"),
                    ("first", "first of its shape (makes it)"),
                    ("restored", "restored from the template")):
        print(f"rkt run /bin/true, {what:30} {med[k]:.2f} s  {_r(times[k])}  "
              f"{med[k] / med['bare']:.2f}x bare; CPU {cpu[k]:.2f} s, "
              f"{cpu[k] / cpu['bare']:.2f}x bare")
    if other:
        print(f"bare QEMU boot+poweroff of {a.bare_kernel}: {med['other']:.2f} s  "
              f"{_r(times['other'])}  CPU {cpu['other']:.2f} s; restored / that: "
              f"{med['restored'] / med['other']:.2f}")
    print(f"restored / bare: {med['restored'] / med['bare']:.2f} (goal <= 0.3); restored "
          f"{med['restored']:.2f} s (goal < 0.4 s under TCG); first / booted: "
          f"{med['first'] / med['booted']:.2f} (goal <= 1.3)")
    if a.jail:
        jail_cost([*run, *true], env, a.runs, work / "rkt")
    if a.peer or a.app_uptime:
        peer_cost(work, run, true, env, a)
    for mode in ("on", "off") if a.pods else ():  # --pods 0: start-up only
        memory(work, rkt, stage1, image, dict(env, **{templates.ENV_TEMPLATE: mode}), a, mode)
    subprocess.run(gc, env=env, check=False, capture_output=True)  # the template's RAM file
    return 0


def app_uptime(run: list[str], env: dict[str, str]) -> float:
    """The guest's uptime when the app of run (`... --exec /bin/true`) starts."""
    cat = [*run[:-1], "/bin/cat", "--", "/proc/uptime"]
    out = subprocess.run(cat, check=True, env=env, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL).stdout
    return float(out.split()[0])


def peer_pod(work: Path, src: Path, env: dict[str, str],
             rootfs: str | None) -> tuple[list[str], dict[str, str]]:
    """`rkt run` (to be followed by flags and the image) with the pyrkt at src: its
    stage1 image, its code, its own data dir (rootfs: --rootfs, its --kvm-rootfs)."""
    peer_env = dict(env, PYTHONPATH=str(src))
    build = ("import sys; from pathlib import Path; from pyrkt.stage1.build.aci import "
             "Flavor, Hypervisor, build_stage1_aci; print(build_stage1_aci(Flavor.KVM, "
             "Path(sys.argv[1]), Hypervisor.QEMU))")
    stage1 = subprocess.run([sys.executable, "-c", build, str(work / "s1-peer")], env=peer_env,
                            check=True, capture_output=True, text=True).stdout.strip()
    run = [sys.executable, "-m", "pyrkt", f"--dir={work / 'rkt-peer'}", "run",
           "--insecure-options=image", "--net=none", f"--stage1-path={stage1}",
           *([f"--kvm-rootfs={rootfs}"] if rootfs else [])]
    return run, peer_env


def peer_cost(work: Path, run: list[str], true: list[str], env: dict[str, str],
              a: argparse.Namespace) -> None:
    """--peer and --app-uptime: this tree's pods against the peer's, booted and then
    restored (each tree from a template of its own, made by a first run), run by run,
    alternating which goes first."""
    peer = peer_pod(work, a.peer, env, a.rootfs) if a.peer else None
    booted = [*run, "--kvm-template=off", *true]
    if peer is not None:
        for what, flags in (("booted", ["--kvm-template=off"]), ("restored", [])):
            pods = ([*run, *flags, *true], env), ([*peer[0], *flags, *true], peer[1])
            for argv, e in pods:  # warm: the image imported, the template made
                timed(argv, e)
            mine, theirs = [], []
            for i in range(a.runs):
                for which in ((0, 1) if i % 2 == 0 else (1, 0)):
                    (mine if which == 0 else theirs).append(timed(*pods[which]))
            paired = [t / p for t, p in zip(mine, theirs, strict=True)]
            print(f"{what} pod, this tree: {statistics.median(mine):.2f} s  {_r(mine)}; "
                  f"peer {a.peer}: {statistics.median(theirs):.2f} s  {_r(theirs)}")
            print(f"  this / peer, run by run: median {statistics.median(paired):.3f}  "
                  f"{[round(r, 3) for r in paired]}")
    if a.app_uptime:
        peer_booted = [*peer[0], "--kvm-template=off", *true] if peer is not None else []
        ups, peer_ups = [], []
        for i in range(a.runs):
            if peer is not None and i % 2:
                peer_ups.append(app_uptime(peer_booted, peer[1]))
            ups.append(app_uptime(booted, env))
            if peer is not None and not i % 2:
                peer_ups.append(app_uptime(peer_booted, peer[1]))
        print(f"guest uptime when the app starts: {statistics.median(ups):.2f} s  {ups}")
        if peer is not None:
            print(f"  peer: {statistics.median(peer_ups):.2f} s  {peer_ups}")
    if peer is not None:  # its exited pods and its template
        subprocess.run([*peer[0][:4], "gc", "--grace-period=0s"], env=peer[1], check=False,
                       capture_output=True)


def _r(ts: list[float]) -> list[float]:
    return [round(t, 2) for t in ts]


def memory(work: Path, rkt: list[str], stage1: Path, image: Path, env: dict[str, str],
           a: argparse.Namespace, mode: str) -> None:
    """N idle pods at once: PSS and RSS of each pod's QEMU and waiter."""
    procs: list[tuple[Path, subprocess.Popen[bytes]]] = []
    try:
        for i in range(a.pods):
            uf = work / f"uuid-{mode}-{i}"
            procs.append((uf, subprocess.Popen(
                [*rkt, "run", "--insecure-options=image", "--net=none",
                 f"--stage1-path={stage1}", f"--uuid-file-save={uf}",
                 *([f"--kvm-rootfs={a.rootfs}"] if a.rootfs else []), str(image),
                 "--exec", "/bin/sleep", "--", "3600"],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)))
            if i == 0 and mode == "on":
                _wait_started(work, [procs[0][0]])  # the template, made once
        pods = _wait_started(work, [uf for uf, _ in procs])
        qemus = [int((pod / "pid").read_text()) for pod in pods]
        time.sleep(a.settle / 2)
        t0, cpu0 = time.monotonic(), sum(_cpu_s(q) for q in qemus)
        time.sleep(a.settle / 2)
        idle_cpu = (sum(_cpu_s(q) for q in qemus) - cpu0) / (time.monotonic() - t0)
        pss = rss = 0
        for (_, p), qemu in zip(procs, qemus, strict=True):
            pss += kib(qemu, "Pss") + kib(p.pid, "Pss")
            rss += kib(qemu, "Rss") + kib(p.pid, "Rss")
        n = len(procs)
        what = "restored from a template" if mode == "on" else "booted (templates off)"
        print(f"{n} idle VM pods, {what}: PSS {pss / n / MIB:.1f} MiB per pod"
              f"{' (goal <= 40)' if mode == 'on' else ''}, RSS {rss / n / MIB:.1f} MiB per "
              f"pod (QEMU + waiter, {a.settle:.0f} s after the last started); host CPU "
              f"while idle {100 * idle_cpu / n:.1f}% of a core per pod (QEMU, the last "
              f"{a.settle / 2:.1f} s)")
    finally:
        for uf, _ in procs:
            if uf.exists():
                subprocess.run([*rkt, "stop", "--force", uf.read_text().strip()], env=env,
                               check=False, capture_output=True)
        for _, p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        subprocess.run([*rkt, "gc", "--grace-period=0s"], env=env, check=False,
                       capture_output=True)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process pid (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_started(work: Path, uuid_files: list[Path], timeout: float = 600) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = []
        for uf in uuid_files:
            uuid = uf.read_text().strip() if uf.exists() else ""
            pod = next((p for p in kh.pod_dirs(work / "rkt") if uuid and p.name == uuid), None)
            if pod is not None and (pod / "kvm/ctl/started").exists():
                found.append(pod)
        if len(found) == len(uuid_files):
            return found
        time.sleep(0.2)
    raise SystemExit("the idle pods did not start")


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
