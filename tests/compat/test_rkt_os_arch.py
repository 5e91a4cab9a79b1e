"""rkt's tests/rkt_os_arch_test.go: an app image must carry `os` and `arch` labels for
this host; otherwise `rkt run` (of the file, or of the image fetched before) fails with
rkt's message, exit 254, before any pod exists."""

from __future__ import annotations

import pytest
from rktcompat import ImageMaker, Rkt

VERSION = {"name": "version", "value": "1.30.0"}
OS = {"name": "os", "value": "linux"}
ARCH = {"name": "arch", "value": "amd64"}
STAGE0 = "run: error setting up stage0: "
CASES = [
    ([VERSION, OS, ARCH], None),
    ([VERSION, ARCH], "missing os label in the image manifest"),
    ([VERSION, OS], "missing arch label in the image manifest"),
    ([VERSION, {"name": "os", "value": "freebsd"}, ARCH],
     'bad os "freebsd" (must be one of: [linux])'),
    ([VERSION, OS, {"name": "arch", "value": "armv5l"}],
     'bad arch "armv5l" for linux (must be one of: [amd64 i386 aarch64 aarch64_be armv6l '
     'armv7l armv7b ppc64le])'),
]  # fmt: skip


@pytest.mark.parametrize("fetched", [False, True], ids=["run", "fetch-run"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_missing_or_invalid_os_arch(flavor: str, rkt: Rkt, make_image: ImageMaker,
                                    fetched: bool, case: int) -> None:
    labels, error = CASES[case]
    image = str(make_image(name="example.com/rkt-missing-os-arch-test", labels=labels,
                           app={"exec": ["/bin/echo", "HelloWorld"]}))
    if fetched:
        image = rkt("--insecure-options=image", "fetch", "--full", image).stdout.strip()
    cp = rkt.run(image)
    if error is None:
        assert (cp.returncode, cp.stdout) == (0, "HelloWorld\n"), cp.stderr
    else:
        assert (cp.returncode, cp.stdout) == (254, "")
        assert cp.stderr.endswith(f"{STAGE0}{error}\n")
        assert rkt.uuids() == []
