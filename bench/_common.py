"""What the benches share: running one in a scratch folder; for the registry benches,
their size arguments, a loopback registry serving a bulk image of that size, and the
summary line of a series of timings.

Imported by the benches in this folder (run as `python bench/NAME.py`, so this folder
is on sys.path); it puts `tests/` there too, for `support.images` and `support.registry`.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.images import bulk_layout
from support.registry import Registry


def in_scratch(prefix: str, bench: Callable[[Path, argparse.Namespace], int],
               a: argparse.Namespace) -> int:
    """bench(work, a) in a fresh temporary folder, removed afterwards (also on errors)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return bench(work, a)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bulk_args() -> argparse.Namespace:
    """--mb (image size), --layers and --runs, with the registry benches' defaults."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    return ap.parse_args()


@contextlib.contextmanager
def bulk_registry(base: Path, mb: int, layers: int) -> Iterator[Registry]:
    """A loopback docker-registry under base holding `bulk:latest`, about mb MiB in
    layers + 1 layers (support.images.bulk_layout); stopped when the block ends."""
    t = time.perf_counter()
    bulk_layout(base / "oci", total_mb=mb, layers=layers)
    print(f"built a {mb} MiB, {layers + 1}-layer image in {time.perf_counter() - t:.1f}s")
    reg = Registry(base / "registry").start()
    try:
        reg.push(base / "oci", "latest", "bulk")
        yield reg
    finally:
        reg.stop()


def runs(seconds: Sequence[float]) -> str:
    """`median 1.23s  runs 1.20 1.23 1.31`."""
    return (f"median {statistics.median(seconds):.2f}s  "
            f"runs {' '.join(f'{x:.2f}' for x in seconds)}")


def compare_on_bulk(
    ours: Callable[[str, Path], float],
    theirs: Callable[[str, Path], float],
    labels: tuple[str, str, str],
) -> int:
    """Time `ours(ref, workdir)` and `theirs(host, workdir)` in turn against one bulk
    registry, `--runs` times each; print both series and the ratio theirs/ours."""
    args = bulk_args()
    with tempfile.TemporaryDirectory(prefix="pyrkt-bench-") as tmp:
        base = Path(tmp)
        with bulk_registry(base, args.mb, args.layers) as reg:
            a_runs, b_runs = [], []
            for _ in range(args.runs):
                a_runs.append(ours(reg.ref("bulk"), base / "pyrkt"))
                b_runs.append(theirs(reg.host, base / "peer"))
    a, b = statistics.median(a_runs), statistics.median(b_runs)
    print(f"{labels[0]}: {runs(a_runs)}")
    print(f"{labels[1]}: {runs(b_runs)}")
    print(f"ratio {labels[2]}: {b / a:.2f}")
    return 0
