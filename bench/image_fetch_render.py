"""Fetch + render: `rkt fetch docker://...` vs `skopeo copy` + `umoci unpack`.

    .venv/bin/python bench/image_fetch_render.py [--mb 100] [--layers 4] [--runs 3]

Starts a loopback docker-registry (tests/support), pushes a multi-layer image of about
--mb MiB (support.images.bulk_layout), then times, --runs times each, from empty dirs:
  pyrkt:       `rkt --insecure-options=image,http fetch docker://HOST/bulk:latest` (a
               fresh process: download in parallel, verify, stream-extract every layer
               into the store's rendered tree) + `Store.render(id)` (what a pod uses)
  skopeo+umoci: `skopeo copy docker://HOST/bulk:latest oci:DIR:latest` then
               `umoci unpack --image DIR:latest BUNDLE` (the same end result: a rootfs)
and prints the medians and the ratio (skopeo+umoci) / pyrkt (above 1: pyrkt is faster).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pyrkt.image.store import Store
from support.images import bulk_layout
from support.registry import Registry


def _time_pyrkt(ref: str, data: Path) -> float:
    shutil.rmtree(data, ignore_errors=True)
    start = time.perf_counter()
    cp = subprocess.run(
        [sys.executable, "-m", "pyrkt", f"--dir={data}", "--insecure-options=image,http",
         "fetch", "--full", ref],
        check=True, stdin=subprocess.DEVNULL, capture_output=True, text=True,
    )  # fmt: skip
    tree = Store(data).render(cp.stdout.strip())
    elapsed = time.perf_counter() - start
    assert (tree / "rootfs" / "bin" / "busybox").is_file()
    return elapsed


def _time_skopeo_umoci(host: str, work: Path) -> float:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    start = time.perf_counter()
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                    f"docker://{host}/bulk:latest", f"oci:{work}/oci:latest"],
                   check=True, stdin=subprocess.DEVNULL)  # fmt: skip
    subprocess.run(["umoci", "unpack", "--image", f"{work}/oci:latest", f"{work}/bundle"],
                   check=True, stdin=subprocess.DEVNULL, capture_output=True)  # fmt: skip
    elapsed = time.perf_counter() - start
    assert (work / "bundle" / "rootfs" / "bin" / "busybox").is_file()
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyrkt-bench-") as tmp:
        base = Path(tmp)
        t = time.perf_counter()
        bulk_layout(base / "oci", total_mb=args.mb, layers=args.layers)
        print(f"built a {args.mb} MiB, {args.layers + 1}-layer image in "
              f"{time.perf_counter() - t:.1f}s")
        reg = Registry(base / "registry").start()
        try:
            reg.push(base / "oci", "latest", "bulk")
            ours, theirs = [], []
            for _ in range(args.runs):
                ours.append(_time_pyrkt(reg.ref("bulk"), base / "pyrkt"))
                theirs.append(_time_skopeo_umoci(reg.host, base / "skopeo"))
        finally:
            reg.stop()
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"pyrkt fetch+render:  median {a:.2f}s  runs {' '.join(f'{x:.2f}' for x in ours)}")
    print(f"skopeo copy + umoci unpack: median {b:.2f}s  "
          f"runs {' '.join(f'{x:.2f}' for x in theirs)}")
    print(f"ratio (skopeo+umoci)/pyrkt: {b / a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
