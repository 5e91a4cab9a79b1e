"""Registry download speed: pyrkt's docker client vs skopeo, same image, same registry.

    .venv/bin/python bench/registry_pull.py [--mb 100] [--layers 4] [--runs 3]

Starts a loopback docker-registry (tests/support), pushes a multi-layer image of about
--mb MiB built by support.images.bulk_layout, then times, --runs times each:
  pyrkt:  pyrkt.image.docker.pull.pull() and every layer downloaded and digest-verified
  skopeo: skopeo copy docker://HOST/bulk:latest dir:OUT (download, digests verified)
and prints the medians and the ratio skopeo / pyrkt (above 1: pyrkt is faster).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import compare_on_bulk

from pyrkt.image.docker.pull import PullOptions, pull


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
    return compare_on_bulk(_time_pyrkt, _time_skopeo,
                           ("pyrkt pull", "skopeo copy", "skopeo/pyrkt"))

if __name__ == "__main__":
    sys.exit(main())
