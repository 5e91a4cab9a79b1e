"""beneath's tree removal and mount points (root: it makes a bind mount)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

# In a private mount namespace of its own (nothing is left mounted on the host): bind a
# folder of the same file system into the tree, remove the tree, report what is left.
SCRIPT = r"""
import os, subprocess, sys
from pyrkt.linux import beneath
tree, src = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "--bind", src, os.path.join(tree, "a", "bound")], check=True)
try:
    beneath.remove_tree(tree)
except OSError as e:
    print("error", e.errno)
print("kept" if os.path.exists(os.path.join(src, "precious")) else "emptied")
"""


def test_rmtree_does_not_empty_a_bind_mount_of_the_same_file_system(tmp_path: Path) -> None:
    src = tmp_path / "host-data"
    src.mkdir()
    (src / "precious").write_text("keep me\n")
    tree = tmp_path / "pod"
    (tree / "a" / "bound").mkdir(parents=True)
    (tree / "a" / "file").write_text("x")
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", SCRIPT,
         str(tree), str(src)],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")
    assert "kept" in out, out
    assert "error 18" in out, out  # EXDEV: the mount point stays, said
    assert (src / "precious").read_text() == "keep me\n"
    assert not (tree / "a" / "file").exists()
