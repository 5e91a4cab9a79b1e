"""`rkt run` of /bin/true (container stage1, image already fetched) side by side with
`runc run` and `podman --runtime=runc run` of the same busybox rootfs; prints the
median wall time of each and the ratios. Needs root, runc, podman.

    sudo .venv/bin/python bench/container_run.py [--runs N] [--net none|host] [--phases N]

The three are run in turn, round after round (with a pause after each), so that the
machine's load weighs on each alike. `--phases N` also traces N more `rkt run`s (strace,
seccomp-bpf: only a few syscalls are stopped) and prints the median time between
landmarks: where the time goes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import resource
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


def rkt_command() -> list[str]:
    """The `rkt` command as installed (the venv's console script), as a user runs it;
    `python -m pyrkt` where there is none (it also imports runpy: ~15% more work)."""
    script = Path(sys.executable).with_name("rkt")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pyrkt"]


Cmd = tuple[Callable[[int], Sequence[str]], Path | None]
# A pause after each command: podman's clean-up (conmon, `podman container cleanup`)
# outlives `podman run` and would otherwise be billed to whichever command runs next.
SETTLE_S = 0.5


def timed(cmds: dict[str, Cmd], runs: int) -> dict[str, tuple[list[float], list[float]]]:
    """Wall time and CPU time (user + sys of the command and the children it waited
    for) of each command, interleaved; the first round warms caches (dropped). CPU time
    weighs less with the machine's load than wall time does; podman's clean-up, which
    outlives it, is not in its CPU time."""
    out: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in cmds}
    for i in range(runs + 1):
        for name, (argv_for, cwd) in cmds.items():
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run(argv_for(i), check=True, cwd=cwd, env=ENV,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            wall = time.perf_counter() - t
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            if i:
                out[name][0].append(wall)
                out[name][1].append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
            time.sleep(SETTLE_S)
    return out


# Landmarks in an strace of `rkt run` (the first or last line matching), in order.
PHASES = (
    ("Python start, CLI, imports (to the image index open)", "first", r'index\.sqlite"'),
    ("stage0: resolve images and stage1, pod folder (to unshare)", "first",
     r"unshare\(CLONE_NEWNS\)"),
    ("stage0 overlays, stage1 imports (to the plan's run-options read)", "last",
     r"run-options\.json"),
    ("stage1: plan, cgroups, /etc files (to the pod's unshare)", "first",
     r"unshare\(CLONE_NEWNS\|CLONE_NEWUTS"),
    ("namespaces, pod init, app rootfs (to the app's execve)", "first",
     r'execve\("/bin/true"'),
    ("app runs and exits, clean-up (to rkt's exit)", "last", r"\+\+\+ exited"),
)


def phases(rkt_cmd: Sequence[str], runs: int, work: Path) -> str:
    rows: list[list[float]] = []
    for i in range(runs + 1):
        trace = work / f"trace-{i}"
        subprocess.run(["strace", "-f", "--seccomp-bpf", "-ttt", "-o", str(trace),
                        "-e", "trace=execve,unshare,clone,openat,exit_group", *rkt_cmd],
                       check=True, env=ENV, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lines = trace.read_text().splitlines()
        stamps = [float(ln.split()[1]) for ln in lines]
        marks = [stamps[0]]
        for _, which, pat in PHASES:
            hits = [t for ln, t in zip(lines, stamps, strict=True) if re.search(pat, ln)]
            marks.append(hits[0] if which == "first" else hits[-1])
        if i:
            rows.append([(b - a) * 1000 for a, b in itertools.pairwise(marks)])
    text = f"\nwhere the time goes (strace'd, median of {runs}; tracing adds a little):\n"
    for j, (what, _, _) in enumerate(PHASES):
        text += f"  {statistics.median(r[j] for r in rows):6.1f} ms  {what}\n"
    return text + f"  {statistics.median(sum(r) for r in rows):6.1f} ms  total\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--net", default="none", choices=("none", "host"))
    ap.add_argument("--phases", type=int, default=0, help="strace this many more rkt runs")
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
        rkt = [*rkt_command(), f"--dir={work / 'rkt'}"]
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
        results = timed({
            "rkt": (lambda i: rkt_cmd, None),
            "runc": (lambda i: ["runc", "run", f"bench-{os.getpid()}-{i}"], work / "bundle"),
            "podman": (lambda i: podman_cmd, None),
        }, opts.runs)
        where = phases(rkt_cmd, opts.phases, work) if opts.phases else ""
        subprocess.run([*rkt, "gc", "--grace-period=0s"], capture_output=True)
    med = {k: statistics.median(w) * 1000 for k, (w, _) in results.items()}
    cpu = {k: statistics.median(c) * 1000 for k, (_, c) in results.items()}
    for k, (w, _) in results.items():
        print(f"{k:<7} median {med[k]:7.1f} ms   min {min(w) * 1000:7.1f} ms   "
              f"cpu {cpu[k]:6.1f} ms   ({len(w)} runs)")
    print(f"rkt / runc   = {med['rkt'] / med['runc']:.2f}x   (goal: <= 3x)")
    print(f"rkt / podman = {med['rkt'] / med['podman']:.2f}x   (goal: < 1x)")
    print(f"load average {os.getloadavg()[0]:.1f}")
    print("\n| net | load | rkt ms | runc ms | podman ms | rkt/runc | rkt/podman "
          "| cpu rkt/runc |")
    print(f"| {opts.net} | {os.getloadavg()[0]:.1f} | {med['rkt']:.0f} | {med['runc']:.0f} "
          f"| {med['podman']:.0f} | {med['rkt'] / med['runc']:.2f} "
          f"| {med['rkt'] / med['podman']:.2f} | {cpu['rkt'] / cpu['runc']:.2f} |")
    print(where, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
