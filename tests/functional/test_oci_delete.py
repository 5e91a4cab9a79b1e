"""`rkt-runtime delete` never reaches into a bundle: the bundle's rootfs is bound into
the pod folder only in the container process's own mount namespace, and should such a
mount show up where `delete` runs (planted here in the test's namespace, from the same
file system, so that st_dev does not tell), `delete` refuses instead of emptying it."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from support.oci import RUNTIME, make_bundle

pytestmark = [pytest.mark.root]


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # stderr to a file: the container process `create` leaves keeps it open
    with tempfile.TemporaryFile("w+") as err:
        cp = subprocess.run([str(RUNTIME), "--root", str(root), *args],
                            stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                            timeout=120, check=False)
        err.seek(0)
        return subprocess.CompletedProcess(cp.args, cp.returncode, "", err.read())


def test_delete_refuses_a_mount_under_the_state_folder(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle", ["true"])
    (bundle / "rootfs" / "precious").write_text("keep me\n")
    root = tmp_path / "root"
    target = root / "c1" / "pod" / "stage1" / "rootfs" / "opt" / "stage2" / "app" / "rootfs"
    try:
        assert run(root, "create", "--bundle", str(bundle), "c1").returncode == 0
        subprocess.run(["mount", "--bind", str(bundle / "rootfs"), str(target)], check=True)
        try:
            cp = run(root, "delete", "--force", "c1")
            assert cp.returncode == 1 and "mounted under it" in cp.stderr, cp.stderr
            assert (bundle / "rootfs" / "precious").read_text() == "keep me\n"
        finally:
            subprocess.run(["umount", str(target)], check=True)
    finally:
        assert run(root, "delete", "--force", "c1").returncode == 0
    assert not (root / "c1").exists()
    assert (bundle / "rootfs" / "precious").read_text() == "keep me\n"
