"""rkt's tests/rkt_diagnostic_test.go: an app that cannot be executed gets one line
naming the file that could not be opened (the program, or its ELF interpreter), as
rkt's stage1 `diagnostic` printed it, and exit status 203 (systemd's EXIT_EXEC). A bare
command name is looked up in the app's PATH before the pod starts (rkt's FindBinPath)."""

from __future__ import annotations

import os

import pytest
from rktcompat import ImageMaker, Rkt, on

CASES = [
    (["--exec=/foo-not-there"], '"/foo-not-there"'),
    (["--exec=/foo-not-there", "--", "arg1", "arg2"], '"/foo-not-there"'),
    (["--exec=/foo-not-there X", "--", "arg1", "arg2"], '"/foo-not-there X"'),
]


@pytest.mark.parametrize(("flavor", "case"), [
    *[on("coreos", i) for i in range(len(CASES))],
    *[on("kvm", i) for i in range(len(CASES))],
])  # fmt: skip
def test_missing_program(flavor: str, case: int, rkt: Rkt, make_image: ImageMaker) -> None:
    flags, name = CASES[case]
    cp = rkt.run(str(make_image(app={"exec": ["/bin/true"]})), *flags)
    assert cp.returncode == 203
    assert f"Error: Unable to open {name}: No such file or directory\n" in cp.stderr


@pytest.mark.parametrize("flavor", [on("coreos"), on("kvm")])
def test_missing_elf_interpreter(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    """The host's (dynamic) /bin/ls in a static busybox image: its interpreter is absent.
    (/bin's real path: pyrkt refuses a volume source through a symbolic link.)"""
    cp = rkt.run(f"--volume=host-bin,kind=host,source={os.path.realpath('/bin')}", "--mount",
                 "volume=host-bin,target=/var/host-bin",
                 str(make_image(app={"exec": ["/bin/true"]})), "--exec=/var/host-bin/ls")
    assert cp.returncode == 203
    assert 'Error: Unable to open "/lib64/ld-linux-x86-64.so.2": No such file or ' \
        'directory\n' in cp.stderr


def test_bare_name_not_in_path(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    image = make_image(app={"exec": ["no-such-program"],
                            "environment": [{"name": "PATH", "value": "/usr/bin:/bin"}]})
    cp = rkt.run(str(image))
    assert cp.returncode == 254 and cp.stdout == ""
    assert cp.stderr.endswith("stage1: app 'busybox': unable to find \"no-such-program\" in "
                              "\"/usr/bin:/bin\"\n")
    found = rkt.run(str(image), "--exec=sh", "--", "-c", 'echo "$0"')
    assert (found.returncode, found.stdout) == (0, "/bin/sh\n")  # argv[0]: the path found
