"""Registry download speed: pyrkt's docker client vs skopeo, same image, same registry.

    .venv/bin/python bench/registry_pull.py [--mb 100] [--layers 4] [--runs 3]

Starts a loopback docker-registry (tests/support), pushes a multi-layer image of about
--mb MiB built by support.images.bulk_layout, then times, --runs times each:
  pyrkt:  pyrkt.image.docker.pull.pull() and every layer downloaded and digest-verified
  skopeo: skopeo copy docker://HOST/bulk:latest dir:OUT (download, digests verified)
and prints the medians and the ratio skopeo / pyrkt (above 1: pyrkt is faster).
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

from pyrkt.image.docker.pull import PullOptions, pull
from support.images import bulk_layout
from support.registry import Registry


def _time_pyrkt(ref: str, work: Path) -> float:
    shutil.rmtree(work, ignore_errors=True)
    start = time.perf_counter()
    with pull(ref, work, options=PullOptions(insecure_http=True)) as img:
        for _ in img.layers:
            pass
    return time.perf_counter() - start


def _time_skopeo(host: str, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                    f"docker://{host}/bulk:latest", f"dir:{out}"],
                   check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


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
                theirs.append(_time_skopeo(reg.host, base / "skopeo"))
        finally:
            reg.stop()
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"pyrkt pull:  median {a:.2f}s  runs {' '.join(f'{x:.2f}' for x in ours)}")
    print(f"skopeo copy: median {b:.2f}s  runs {' '.join(f'{x:.2f}' for x in theirs)}")
    print(f"ratio skopeo/pyrkt: {b / a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
