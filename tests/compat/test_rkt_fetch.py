"""rkt's tests/rkt_fetch_test.go: where an image comes from, in rkt's `--debug` words
(`image: using image from file X` for a file, whatever the pull policy, for fetch, run
and prepare; from the store by name or hash), and the error for an ACI without its
signature. The remote cases (appc discovery, HTTP caching, resumed downloads) have
their own tests (see docs/rkt-compat.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rktcompat import ImageMaker, Rkt

pytestmark = pytest.mark.root


@pytest.mark.parametrize("verb", ["fetch", "run", "prepare"])
@pytest.mark.parametrize("policy", [[], ["--store-only"], ["--no-store"]], ids=str)
def test_fetch_from_file(rkt: Rkt, make_image: ImageMaker, tmp_path: Path, verb: str,
                         policy: list[str]) -> None:
    image = make_image(name="example.com/rkt-inspect-implicit-fetch",
                       app={"exec": ["/bin/true"]})
    os.chdir(image.parent)  # the image as a user names it, relative
    extra = [rkt.stage1_flag(), "--net=none"] if verb == "run" else []
    if verb == "prepare":
        extra = [rkt.stage1_flag()]
    for _ in range(2):  # again: a file is read again, not taken from the store
        cp = rkt("--insecure-options=image", "--debug", verb, *policy, *extra, image.name)
        assert cp.returncode == 0, cp.stderr
        assert f"image: using image from file {image.name}\n" in cp.stderr
        assert "image: warning: image signature verification has been disabled\n" in cp.stderr


def test_store_by_name_and_hash(rkt: Rkt, make_image: ImageMaker) -> None:
    image = make_image(name="example.com/by-name", app={"exec": ["/bin/true"]})
    image_id = rkt("--insecure-options=image", "fetch", "--full", str(image)).stdout.strip()
    cp = rkt("--debug", "fetch", "example.com/by-name")
    assert (cp.returncode, cp.stdout.strip()) == (0, image_id[:39])
    assert "image: using image from local store for image name example.com/by-name\n" \
        in cp.stderr
    cp = rkt("--debug", "fetch", image_id[:19])
    assert cp.returncode == 0
    assert f"image: using image from the store with hash {image_id[:19]}\n" in cp.stderr


def test_unsigned_file(rkt: Rkt, make_image: ImageMaker) -> None:
    """rkt opened IMAGE.asc and failed with the open's error, one line, exit 254."""
    image = make_image(app={"exec": ["/bin/true"]})
    cp = rkt("fetch", str(image))
    assert (cp.returncode, cp.stdout, cp.stderr) == (
        254, "", f"fetch: open {image}.asc: no such file or directory\n")
    debug = rkt("--debug", "fetch", str(image))  # no traceback: a user's error
    assert debug.returncode == 254 and "Traceback" not in debug.stderr
    assert debug.stderr.endswith(f"fetch: open {image}.asc: no such file or directory\n")


@pytest.mark.registry
def test_docker_debug_lines(rkt: Rkt, busybox_image: str) -> None:
    """TestFetchAny's docker rows, in rkt's --debug words: fetched from the registry,
    then found in the store by its URL (and fetched again with --no-store)."""
    first = rkt("--insecure-options=image,http", "--debug", "fetch", busybox_image)
    assert first.returncode == 0, first.stderr
    assert f'image: remote fetching from URL "{busybox_image}"\n' in first.stderr
    assert f"image: fetching image from {busybox_image}\n" in first.stderr
    again = rkt("--insecure-options=image,http", "--debug", "fetch", busybox_image)
    assert f"image: using image from local store for url {busybox_image}\n" in again.stderr
    update = rkt("--insecure-options=image,http", "--debug", "fetch", "--no-store",
                 busybox_image)
    assert f'image: remote fetching from URL "{busybox_image}"\n' in update.stderr
