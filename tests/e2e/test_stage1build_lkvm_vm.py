"""A pod under kvmtool, from stage1-kvm-lkvm.aci. Runs only where an `lkvm` binary is on
the PATH and KVM works (no kvmtool package exists for Debian: untested on our machines).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from stage1build_app import APP_EXIT, APP_OUT, app_aci

pytestmark = [pytest.mark.root, pytest.mark.lkvm]


def test_pod_runs_under_lkvm(tmp_path: Path) -> None:
    out = tmp_path / "bin"
    cp = subprocess.run(
        [sys.executable, "-m", "pyrkt", "stage1", "build", "--flavors=kvm",
         "--hypervisors=lkvm", "--kernel=auto", f"--output={out}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    d = tmp_path / "rkt"
    try:
        cp = subprocess.run(
            [sys.executable, "-m", "pyrkt", f"--dir={d}", "--insecure-options=image", "run",
             "--net=none", f"--stage1-path={out / 'stage1-kvm.aci'}", str(app_aci(tmp_path))],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        logs = "\n".join(f"--- {f}\n{f.read_text(errors='replace')}"
                         for f in sorted(d.glob("pods/*/*/kvm/*"))
                         if f.name in ("serial.log", "cmdline"))  # fmt: skip
        detail = f"stdout:\n{cp.stdout}\nstderr:\n{cp.stderr}\n{logs}"
        assert cp.returncode == APP_EXIT, detail
        assert APP_OUT in cp.stdout, detail
    finally:
        subprocess.run([sys.executable, "-m", "pyrkt", f"--dir={d}", "gc",
                        "--grace-period=0s"], capture_output=True, check=False)  # fmt: skip
