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

import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import compare_on_bulk

from pyrkt.image.store import Store


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
    return compare_on_bulk(_time_pyrkt, _time_skopeo_umoci,
                           ("pyrkt fetch+render", "skopeo copy + umoci unpack",
                            "(skopeo+umoci)/pyrkt"))

if __name__ == "__main__":
    sys.exit(main())
