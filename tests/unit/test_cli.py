"""The `rkt` command itself: global flags, version, errors and exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pyrkt.cli.common import extract_globals
from pyrkt.errors import UsageError
from pyrkt.options import Insecure


def rkt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyrkt", *args], capture_output=True, text=True, check=False
    )


def test_version_prints_rkt_and_appc_versions() -> None:
    cp = rkt("version")
    assert cp.returncode == 0
    assert cp.stdout.startswith("rkt Version: ")
    assert "appc Version: " in cp.stdout


def test_unknown_verb_exits_254_with_one_line() -> None:
    cp = rkt("frobnicate")
    assert cp.returncode == 254
    assert len(cp.stderr.strip().splitlines()) == 1
    assert "unknown command" in cp.stderr
    assert "Traceback" not in cp.stderr


def test_bad_insecure_option_is_rejected() -> None:
    cp = rkt("--insecure-options=imagez", "version")
    assert cp.returncode == 254
    assert "imagez" in cp.stderr


def test_global_flags_anywhere_before_double_dash() -> None:
    g, rest = extract_globals(
        ["run", "--dir=/tmp/x", "img", "--debug", "--insecure-options", "image,http",
         "--", "--debug"]
    )
    assert str(g.dir) == "/tmp/x"
    assert g.debug
    assert g.allows(Insecure.IMAGE) and g.allows(Insecure.HTTP)
    assert not g.allows(Insecure.TLS)
    assert rest == ["run", "img", "--", "--debug"]


def test_all_fetch_expands() -> None:
    g, _ = extract_globals(["--insecure-options=all-fetch"])
    assert g.allows(Insecure.IMAGE) and g.allows(Insecure.HTTP)
    assert not g.allows(Insecure.CAPABILITIES)


def test_missing_flag_value() -> None:
    with pytest.raises(UsageError):
        extract_globals(["--dir"])


def test_help_lists_verbs() -> None:
    cp = rkt("help")
    assert cp.returncode == 0
    for verb in ("run", "fetch", "image", "gc", "enter"):
        assert f"\t{verb}" in cp.stdout


def _every_verb() -> list[list[str]]:
    from pyrkt.cli.image import SUBCOMMANDS
    from pyrkt.cli.main import VERBS

    verbs = [[v] for v in VERBS]
    return verbs + [["image", s] for s in SUBCOMMANDS] + [["stage1", "build"]]


@pytest.mark.parametrize("verb", _every_verb(), ids=" ".join)
def test_every_verb_prints_its_help(verb: list[str], tmp_path: Path) -> None:
    for flag in ("--help", "-h"):
        cp = rkt(f"--dir={tmp_path / 'd'}", *verb, flag)
        assert cp.returncode == 0, cp.stderr
        assert "usage" in cp.stdout.lower()
        assert cp.stderr == ""
    assert not (tmp_path / "d").exists()  # asking for help touches nothing


@pytest.mark.parametrize("args", [["version"], ["help"], ["list"], ["image", "list"]],
                         ids=" ".join)  # fmt: skip
def test_closed_stdout_ends_silently_by_sigpipe(args: list[str], tmp_path: Path) -> None:
    """`rkt list | head -1`: once the reader is gone rkt ends as a Unix tool (and rkt, a
    Go program) does: killed by SIGPIPE, with nothing on stderr."""
    r, w = os.pipe()
    os.close(r)  # the reader is gone before rkt writes a byte
    try:
        cp = subprocess.run([sys.executable, "-m", "pyrkt", f"--dir={tmp_path}", *args],
                            stdout=w, stderr=subprocess.PIPE, text=True, timeout=60)  # fmt: skip
    finally:
        os.close(w)
    assert cp.returncode == -signal.SIGPIPE
    assert cp.stderr == ""


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("")
    verbs = [["list"], ["status", "abc"], ["image", "list"], ["fetch", "x.aci"]]
    if os.geteuid() == 0:
        verbs += [["gc"], ["image", "gc"]]
    for verb in verbs:
        cp = rkt(f"--dir={f}", *verb)
        assert cp.returncode == 254, verb
        assert "Traceback" not in cp.stderr
        assert len(cp.stderr.strip().splitlines()) == 1, cp.stderr
        assert f"data directory {f} is not a directory" in cp.stderr or (
            f"cannot open the image store {f}/cas" in cp.stderr), cp.stderr


@pytest.mark.parametrize("verb", ["enter", "export"])
def test_app_flag_is_an_ac_name(verb: str, tmp_path: Path) -> None:
    cp = rkt(f"--dir={tmp_path}", verb, "--app=../../x", "abc", str(tmp_path / "out.aci"))
    assert cp.returncode == 254
    assert cp.stderr.strip().splitlines() == [
        f"{verb}: --app: invalid name '../../x': ACName must contain only lower case "
        'alphanumeric characters plus "-"']
