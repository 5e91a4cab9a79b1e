"""The `rkt` launcher that scripts/setup.sh writes (Python without `site`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pyrkt.cli import launcher


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_launcher_behaves_as_the_rkt_command(tmp_path: Path) -> None:
    rkt = tmp_path / "rkt"
    assert launcher.main([str(rkt)]) == 0
    assert rkt.stat().st_mode & 0o111
    want = _run([sys.executable, "-m", "pyrkt", "version"])
    got = _run([str(rkt), "version"])
    assert (got.returncode, got.stdout) == (0, want.stdout)
    assert "rkt Version:" in got.stdout
    bad = _run([str(rkt), "no-such-verb"])
    assert bad.returncode == 254
    assert "unknown command 'no-such-verb'" in bad.stderr


def test_launcher_is_rewritten_in_place(tmp_path: Path) -> None:
    rkt = tmp_path / "rkt"
    rkt.write_text("#!/bin/sh\nexit 9\n")
    rkt.chmod(0o755)
    launcher.write(rkt)
    assert _run([str(rkt), "version"]).returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["rkt"]  # no temporary file left
