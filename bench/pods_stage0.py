"""stage0's own cost: `rkt run` with a stage1 that does nothing (`exit 0`), next to
`python -c pass` (the interpreter floor), plus `rkt status`, `rkt list` and `rkt gc` with
many pods. Prints medians and the ratio of stage0 to the bare interpreter. Needs root.

    sudo .venv/bin/python bench/pods_stage0.py [--runs N] [--pods N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
LABELS = [{"name": "version", "value": "1"}, {"name": "os", "value": "linux"},
          {"name": "arch", "value": "amd64"}]  # fmt: skip


def build(base: Path) -> tuple[Path, Path]:
    app = base / "app"
    (app / "rootfs/bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", app / "rootfs/bin/busybox")
    (app / "manifest").write_text(json.dumps({
        "acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/busybox",
        "labels": LABELS, "app": {"exec": ["/bin/busybox", "true"], "user": "0", "group": "0"},
    }))  # fmt: skip
    s1 = base / "stage1"
    (s1 / "rootfs").mkdir(parents=True)
    for verb in ("run", "stop", "gc", "enter"):
        (s1 / "rootfs" / verb).write_text("#!/bin/sh\nexit 0\n")
        (s1 / "rootfs" / verb).chmod(0o755)
    anns = [{"name": f"coreos.com/rkt/stage1/{v}", "value": f"/{v}"}
            for v in ("run", "stop", "gc", "enter")]  # fmt: skip
    anns.append({"name": "coreos.com/rkt/stage1/interface-version", "value": "5"})
    (s1 / "manifest").write_text(json.dumps({
        "acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/stage1-noop",
        "labels": LABELS, "annotations": anns,
    }))  # fmt: skip
    out = []
    for d in (app, s1):
        aci = base / f"{d.name}.aci"
        subprocess.run(["tar", "-C", str(d), "-cf", str(aci), "manifest", "rootfs"], check=True)
        out.append(aci)
    return out[0], out[1]


def timed(argv: Sequence[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)  # fmt: skip
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--pods", type=int, default=50)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pods-") as tmp:
        base = Path(tmp)
        app, s1 = build(base)
        rkt = [sys.executable, "-m", "pyrkt", f"--dir={base / 'data'}",
               "--insecure-options=image"]  # fmt: skip
        image = subprocess.run([*rkt, "fetch", str(app)], env=ENV, capture_output=True,
                               text=True, check=True).stdout.strip()  # fmt: skip
        s1_id = subprocess.run([*rkt, "fetch", str(s1)], env=ENV, capture_output=True,
                               text=True, check=True).stdout.strip()  # fmt: skip
        floor = timed([sys.executable, "-c", "pass"], a.runs)
        run = timed([*rkt, "run", f"--stage1-hash={s1_id}", "--net=none", image], a.runs)
        for _ in range(max(0, a.pods - a.runs)):
            subprocess.run([*rkt, "run", f"--stage1-hash={s1_id}", image], env=ENV,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=True)  # fmt: skip
        pods = [p.name for p in (base / "data/pods/run").iterdir()]
        status = timed([*rkt, "status", pods[0]], a.runs)
        lst = timed([*rkt, "list"], a.runs)
        t = time.perf_counter()
        subprocess.run([*rkt, "gc", "--grace-period=0s"], env=ENV, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)  # fmt: skip
        gc = (time.perf_counter() - t) * 1000
    print(f"python -c pass              {floor:7.1f} ms")
    print(f"rkt run (no-op stage1)      {run:7.1f} ms   {run / floor:5.1f}x the interpreter")
    print(f"rkt status                  {status:7.1f} ms")
    print(f"rkt list ({len(pods)} pods)          {lst:7.1f} ms")
    print(f"rkt gc ({len(pods)} exited pods)     {gc:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
