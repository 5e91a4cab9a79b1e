"""Where the host's time goes in `rkt run /bin/true` of a VM pod restored from a template,
phase by phase, this tree against a peer tree run by run (the host side of issue 10).

Each run is the real CLI (`python -m pyrkt run --net=none --stage1-path=... busybox.aci
--exec /bin/true`, TCG) started through a small driver that wraps a few functions both
trees have and notes the wall time since the command started and the CPU time of the
`rkt` process (stage0 and the stage1 runner, which runs in the same process) at
(each function wrapped as its module is first imported):

    prepare   stage0's `prepare` begins (after Python's start and the CLI's imports)
    stage1    the kvm stage1's `run_main` begins (stage0 done, its mounts made)
    spawn     QEMU is spawned (`launch.spawn` returns: jail made, QEMU started)
    go        the restore sends "go" (QEMU up, the state loaded, the VM running)
    ok        the guest answered "ok" (its `rkt-exec --restore` done)
    exec      the runner becomes the waiter (rkt-wait)
    end       `rkt run` exited (the guest ran the pod and powered off, QEMU exited)

"go" to "ok" and "exec" to "end" are the guest's; the rest is the host's. The driver
adds little (a few function wrappers). Medians over the runs, each tree with its own data
dir and template (made by a first, untimed run).

    sudo .venv/bin/python bench/kvm_restore_phases.py [--runs 10] [--peer SRC]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

import kvm_helpers as kh
from _common import in_scratch

from pyrkt.stage1.build.aci import Flavor, Hypervisor, build_stage1_aci

PHASES = ("prepare", "stage1", "spawn", "go", "ok", "exec", "end")
SRC = Path(__file__).resolve().parent.parent / "src"

# Runs `rkt` (sys.argv[1:]) with the phases noted on stderr as `@phase WALL_MS CPU_MS`.
DRIVER = r"""
import importlib.machinery, os, resource, sys, time
T0 = int(os.environ["PHASES_T0_NS"]) / 1e9
def note(what):
    r = resource.getrusage(resource.RUSAGE_SELF)
    sys.stderr.write(f"@{what} {1000 * (time.perf_counter() - T0):.1f} "
                     f"{1000 * (r.ru_utime + r.ru_stime):.1f}\n")
def wrapped(real, before, after):
    def w(*a, **k):
        if before: note(before)
        try:
            return real(*a, **k)
        finally:
            if after: note(after)
    return w
# module -> (function, note before, note after); wrapped as the module is first imported,
# so that the driver imports nothing the command would not
TARGETS = {
    "pyrkt.stage0.prepare": ("prepare", "prepare", None),
    "pyrkt.stage1.kvm.__main__": ("run_main", "stage1", None),
    "pyrkt.stage1.kvm.launch": ("spawn", None, "spawn"),
    "pyrkt.stage1.kvm.templates.build": ("read_line", "go", "ok"),
}
class Hook:
    @staticmethod
    def find_spec(name, path, target=None):
        if name not in TARGETS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        real = spec.loader.exec_module
        def exec_module(module):
            real(module)
            fn, before, after = TARGETS[name]
            setattr(module, fn, wrapped(getattr(module, fn), before, after))
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Hook)
real_execve = os.execve
def execve(*a):
    note("exec")
    sys.stderr.flush()
    real_execve(*a)
os.execve = execve
sys.argv = ["rkt", *sys.argv[1:]]
from pyrkt.cli.main import main
sys.exit(main())
"""


def one(src: Path, argv: list[str], env: dict[str, str]) -> dict[str, tuple[float, float]]:
    """The phases of one `rkt run`: name -> (wall ms, CPU ms of the rkt process)."""
    e = dict(env, PYTHONPATH=str(src))
    t0 = time.perf_counter()
    e["PHASES_T0_NS"] = str(int(t0 * 1e9))
    cp = subprocess.run([sys.executable, "-c", DRIVER, *argv], env=e, capture_output=True,
                        text=True, stdin=subprocess.DEVNULL, check=True)
    out = {"end": (1000 * (time.perf_counter() - t0), float("nan"))}
    for line in cp.stderr.splitlines():
        if line.startswith("@"):
            what, wall, cpu = line[1:].split()
            out.setdefault(what, (float(wall), float(cpu)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--peer", type=Path, help="another pyrkt's src folder, timed alongside")
    return in_scratch("kvm-phases-", bench, ap.parse_args())


def bench(work: Path, a: argparse.Namespace) -> int:
    image = kh.busybox_aci(work / "aci")
    env = dict(os.environ, RKT_KVM_TEMPLATE="on")  # the accelerator: as rkt decides (cached)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # each tree compiled once (kvm_boot.py)
    trees = {"this tree": SRC} | ({f"peer {a.peer}": a.peer} if a.peer else {})
    argvs = {}
    for i, (name, src) in enumerate(trees.items()):
        build = ("import sys; from pathlib import Path; from pyrkt.stage1.build.aci import "
                 "Flavor, Hypervisor, build_stage1_aci; print(build_stage1_aci(Flavor.KVM, "
                 "Path(sys.argv[1]), Hypervisor.QEMU))")
        stage1 = (build_stage1_aci(Flavor.KVM, work / "s1", Hypervisor.QEMU) if i == 0 else
                  subprocess.run([sys.executable, "-c", build, str(work / f"s1-{i}")],
                                 env=dict(env, PYTHONPATH=str(src)), check=True,
                                 capture_output=True, text=True).stdout.strip())
        argvs[name] = [f"--dir={work / f'rkt-{i}'}", "run", "--insecure-options=image",
                       "--net=none", f"--stage1-path={stage1}", str(image),
                       "--exec", "/bin/true"]
        for _ in range(2):  # the image imported, the template made, then one restore
            one(src, argvs[name], env)
    runs: dict[str, list[dict[str, tuple[float, float]]]] = {n: [] for n in trees}
    for r in range(a.runs):
        for name in list(trees) if r % 2 == 0 else list(reversed(trees)):
            runs[name].append(one(trees[name], argvs[name], env))
    print(f"rkt run /bin/true, restored VM pod, TCG; {a.runs} runs each, interleaved; "
          f"load {os.getloadavg()}; medians, ms since the command started "
          f"(CPU of the rkt process in brackets)")
    print(f"{'':28}" + "".join(f"{p:>14}" for p in PHASES))
    for name, rs in runs.items():
        cells = []
        for p in PHASES:
            wall = statistics.median(r[p][0] for r in rs if p in r)
            cpu = [r[p][1] for r in rs if p in r and r[p][1] == r[p][1]]
            note = f" [{statistics.median(cpu):3.0f}]" if cpu else "      "
            cells.append(f"{wall:6.0f}{note}")
        print(f"{name[:28]:28}" + "".join(f"{c:>14}" for c in cells))
    for name, rs in runs.items():
        host = statistics.median(r["go"][0] for r in rs)
        guest = statistics.median((r["ok"][0] - r["go"][0]) + (r["end"][0] - r["exec"][0])
                                  for r in rs)
        print(f"{name[:28]:28} host until go {host:.0f} ms; guest (go to ok, exec to end) "
              f"{guest:.0f} ms")
    for i, src in enumerate(trees.values()):  # the pods, the templates and their RAM files
        subprocess.run([sys.executable, "-m", "pyrkt", f"--dir={work / f'rkt-{i}'}", "gc",
                        "--grace-period=0s"], env=dict(env, PYTHONPATH=str(src)),
                       check=False, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
