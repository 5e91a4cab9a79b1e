"""`rkt fetch` + `rkt image render` vs `skopeo copy` + `umoci unpack`, same image.

    .venv/bin/python bench/registry_fetch_render.py [--mb 100] [--layers 4] [--runs 3]

Starts a loopback docker-registry (tests/support), pushes a multi-layer image of about
--mb MiB (support.images.bulk_layout), then times, --runs times each, from an empty
store / empty folders:
  pyrkt:        rkt fetch docker://HOST/bulk:latest (download, verify, extract into the
                store) then rkt image render --rootfs-only ID OUT
  skopeo+umoci: skopeo copy docker://HOST/bulk:latest oci:LAYOUT:latest then
                umoci unpack --image LAYOUT:latest BUNDLE
prints the medians and the ratio (above 1: pyrkt is faster). The issue's goal is 1.5.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bulk_args, bulk_registry, runs


def _run(argv: list[str]) -> str:
    cp = subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, capture_output=True,
                        text=True)
    if cp.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({cp.returncode}): {cp.stderr}")
    return cp.stdout


def _time_pyrkt(ref: str, work: Path) -> tuple[float, float]:
    shutil.rmtree(work, ignore_errors=True)
    rkt = [sys.executable, "-m", "pyrkt", f"--dir={work / 'store'}"]
    start = time.perf_counter()
    image_id = _run([*rkt, "--insecure-options=image,http", "fetch", ref]).strip()
    fetched = time.perf_counter()
    _run([*rkt, "image", "render", "--rootfs-only", image_id, str(work / "out")])
    done = time.perf_counter()
    return fetched - start, done - start


def _time_skopeo_umoci(host: str, work: Path) -> float:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start = time.perf_counter()
    _run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
          f"docker://{host}/bulk:latest", f"oci:{work / 'layout'}:latest"])
    _run(["umoci", "unpack", "--image", f"{work / 'layout'}:latest", str(work / "bundle")])
    return time.perf_counter() - start


def main() -> int:
    args = bulk_args()
    with tempfile.TemporaryDirectory(prefix="pyrkt-bench-") as tmp:
        base = Path(tmp)
        with bulk_registry(base, args.mb, args.layers) as reg:
            fetch_only, ours, theirs = [], [], []
            for _ in range(args.runs):
                f, total = _time_pyrkt(reg.ref("bulk"), base / "pyrkt")
                fetch_only.append(f)
                ours.append(total)
                theirs.append(_time_skopeo_umoci(reg.host, base / "skopeo"))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"image: about {args.mb} MiB in {args.layers + 1} layers")
    print(f"rkt fetch:               median {statistics.median(fetch_only):.2f}s")
    print(f"rkt fetch + render:      {runs(ours)}")
    print(f"skopeo copy + umoci:     {runs(theirs)}")
    print(f"ratio (skopeo+umoci) / (rkt fetch+render): {b / a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
