"""rkt's tests/rkt_rm_test.go: `rkt rm` of an exited and a prepared pod (both gone, the
UUIDs quoted on stdout), of an unknown UUID (by argument and by --uuid-file), of ""."""

from __future__ import annotations

from pathlib import Path

import pytest
from rktcompat import ImageMaker, Rkt


def test_rm(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    image = str(make_image(app={"exec": ["/bin/true"]}))
    finished = rkt.prepare(image).stdout.strip()
    assert rkt("--insecure-options=image", "run-prepared", "--net=none",
               finished).returncode == 0
    prepared = rkt.prepare(image).stdout.strip()
    cp = rkt("rm", finished)
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, f'"{finished}"\n', "")
    cp = rkt("rm", prepared)
    assert (cp.returncode, cp.stdout) == (0, f'"{prepared}"\n')
    assert cp.stderr == f'rm: moving expired prepared pod "{prepared}" to garbage\n'
    assert rkt.uuids() == []


@pytest.mark.root
def test_rm_invalid(rkt: Rkt, tmp_path: Path) -> None:
    missing = "0f746094-3438-42bc-ab37-3cf85f132e60"
    (tmp_path / "uuid-file").write_text(missing)
    expected = [f'rm: cannot get pod: no matches found for "{missing}"',
                "rm: failed to remove one or more pods"]
    for args in ([missing], [f"--uuid-file={tmp_path / 'uuid-file'}"]):
        cp = rkt("rm", *args)
        assert (cp.returncode, cp.stdout, cp.stderr.splitlines()) == (254, "", expected)


@pytest.mark.root
def test_rm_empty_uuid(rkt: Rkt) -> None:
    cp = rkt("rm", "")
    assert (cp.returncode, cp.stderr.splitlines()) == (
        254, ["rm: cannot get pod: UUID cannot be empty",
              "rm: failed to remove one or more pods"])
