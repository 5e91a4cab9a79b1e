"""The `rkt` command itself: global flags, version, errors and exit codes."""

from __future__ import annotations

import subprocess
import sys

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
