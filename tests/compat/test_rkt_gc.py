"""rkt's tests/rkt_gc_test.go: `rkt gc --mark-only` moves exited pods and aborted
prepares to the garbage (and nothing else); `rkt gc --expire-prepared=0
--grace-period=0` then removes everything, with rkt's messages on rkt's streams.

rkt's test aborted a prepare with a duplicate app name, which rkt found once the pod
existed; pyrkt refuses that before any pod exists (nothing to collect), so a prepare is
aborted here the way one still is: the disk fills up while the pod is made."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rktcompat import ImageMaker, Rkt


@pytest.fixture
def small_disk(rkt: Rkt) -> Iterator[Path]:
    """rkt's data directory on a 32 MiB tmpfs."""
    rkt.dir.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(rkt.dir)],
                   check=True)
    yield rkt.dir
    rkt.cleanup()
    subprocess.run(["umount", "-l", str(rkt.dir)], check=True)


def test_gc(flavor: str, rkt: Rkt, make_image: ImageMaker, small_disk: Path) -> None:
    image = str(make_image(app={"exec": ["/bin/true"]}))
    finished = rkt.prepare(image).stdout.strip()
    assert rkt("--insecure-options=image", "run-prepared", "--net=none",
               finished).returncode == 0
    prepared = rkt.prepare(image).stdout.strip()
    filler = small_disk / "filler"
    st = os.statvfs(small_disk)
    with open(filler, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * (st.f_bavail * st.f_frsize - (64 << 10)))
    # the image is in the store: by name, nothing to import; copying its tree fills the disk
    failed = rkt.prepare("--no-overlay", "--pull-policy=never", "example.com/busybox")
    assert failed.returncode == 254 and "No space left on device" in failed.stderr
    filler.unlink()
    aborted = [u for u in rkt.uuids() if u not in (finished, prepared)]
    assert len(aborted) == 1 and rkt.status(aborted[0])["state"] == "aborted prepare"

    mark = rkt("gc", "--mark-only=true", "--expire-prepared=0", "--grace-period=0")
    assert (mark.returncode, mark.stdout) == (0, "")
    assert sorted(mark.stderr.splitlines()) == sorted([
        f'gc: moving pod "{finished}" to garbage',
        f'gc: moving failed prepare "{aborted[0]}" to garbage'])
    assert sorted(rkt.uuids()) == sorted([finished, prepared, aborted[0]])

    gc = rkt("gc", "--mark-only=false", "--expire-prepared=0", "--grace-period=0")
    assert gc.returncode == 0
    assert gc.stderr == f'gc: moving expired prepared pod "{prepared}" to garbage\n'
    assert sorted(gc.stdout.splitlines()) == sorted(
        f'Garbage collecting pod "{u}"' for u in (finished, prepared, aborted[0]))
    assert rkt.uuids() == []


@pytest.mark.root
def test_gc_grace_period(rkt: Rkt, make_image: ImageMaker) -> None:
    assert rkt.run(str(make_image(app={"exec": ["/bin/true"]}))).returncode == 0
    uuid = rkt.only_uuid()
    cp = rkt("gc")
    assert (cp.returncode, cp.stdout) == (0, "")
    assert cp.stderr.splitlines() == [
        f'gc: moving pod "{uuid}" to garbage',
        f'gc: pod "{uuid}" not removed: still within grace period (30m0s)']
    cp = rkt("gc", "--grace-period=1h30m")
    assert cp.stderr == f'gc: pod "{uuid}" not removed: still within grace period (1h30m0s)\n'
