"""rkt's command line where no functional test of rkt's pinned it but a user sees it
(rkt's source is the reference): `rkt` without a verb, `--set-env-file` errors, and
`--debug` giving no traceback for a user's error."""

from __future__ import annotations

from pathlib import Path

import pytest
from rktcompat import Rkt

pytestmark = pytest.mark.root


def test_no_verb(rkt: Rkt) -> None:
    """rkt's runMissingCommand: the complaint on stderr, the usage on stdout, exit 2."""
    cp = rkt()
    assert (cp.returncode, cp.stderr) == (2, "rkt: missing command\n")
    assert cp.stdout.startswith("NAME:\n") and "COMMANDS:" in cp.stdout


@pytest.mark.parametrize(("text", "error"), [
    ("A=1\nA=2\n", 'environment variable "A" already set (file "{f}")'),
    ("A\n", 'environment variable must be specified as name=value (file "{f}")'),
    ("=x\n", 'environment variable must be specified as name=value (file "{f}")'),
])  # fmt: skip
def test_set_env_file_errors(rkt: Rkt, tmp_path: Path, text: str, error: str) -> None:
    f = tmp_path / "env"
    f.write_text(text)
    cp = rkt("run", "--net=none", f"--set-env-file={f}", "x.aci")
    assert (cp.returncode, cp.stderr) == (
        254, f'run: invalid argument "{f}" for "--set-env-file" flag: '
             f"{error.format(f=f)}\n")


@pytest.mark.parametrize("args", [
    ["run", "--net=none", "--exec=/bin/true"],  # an app flag before any image
    ["rm", ""], ["status", "0f746094"], ["image", "cat-manifest", "sha512-1234"],
    ["run", "--net=none", "--pod-manifest=/dev/null", "--no-store"],
])  # fmt: skip
def test_debug_shows_no_traceback_for_a_users_error(rkt: Rkt, args: list[str]) -> None:
    plain, debug = rkt(*args), rkt("--debug", *args)
    assert plain.returncode == debug.returncode == 254
    assert "Traceback" not in debug.stderr
    assert debug.stderr.splitlines()[-1] == plain.stderr.splitlines()[-1]
