"""An image tree as an ext4 image (`pyrkt.image.fsimage`), read back with e2fsprogs'
debugfs (on a file we made, never mounted): what a local disk keeps is kept, the
root has the tree's mode, no lost+found is added, and the paths every pod needs are."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from pyrkt.image import fsimage

pytestmark = pytest.mark.root


def debugfs(image: Path, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, str(image)], capture_output=True,
                          text=True, check=True).stdout


def stat_of(image: Path, path: str) -> str:
    return debugfs(image, f"stat {path}")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    r = tmp_path / "tree" / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "data").mkdir()
    (r / "data" / "a").write_text("content\n")
    os.link(r / "data" / "a", r / "data" / "b")
    os.mknod(r / "data" / "null", 0o666 | 0o020000, os.makedev(1, 3))
    os.mkfifo(r / "data" / "fifo")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(r / "data" / "sock"))
    s.close()
    (r / "data" / "link").symlink_to("/etc/passwd")
    os.chown(r / "data" / "a", 12, 34)
    os.chmod(r / "data" / "a", 0o4750)
    with open(r / "data" / "sparse", "wb") as f:
        f.seek(1 << 30)
        f.write(b"x")
    os.setxattr(r / "data" / "a", "user.k", b"v")
    (r / "proc").symlink_to("/elsewhere")  # left alone: not a mount point we make
    r.chmod(0o711)
    return r.parent


def test_an_image_keeps_what_a_local_disk_keeps(tree: Path) -> None:
    img = fsimage.disk_image(tree)
    assert img == tree / fsimage.NAME
    assert img.stat().st_mode & 0o777 == 0o444
    a, b = stat_of(img, "/data/a"), stat_of(img, "/data/b")
    assert a.split()[1] == b.split()[1]  # "Inode: N": the same inode
    assert "Links: 2" in a
    assert "User:    12   Group:    34" in a and "Mode:  04750" in a
    assert "user.k" in debugfs(img, "ea_list /data/a")
    assert "Type: character special" in stat_of(img, "/data/null")
    assert "Type: FIFO" in stat_of(img, "/data/fifo")
    assert "Type: socket" in stat_of(img, "/data/sock")
    assert 'Fast link dest: "/etc/passwd"' in stat_of(img, "/data/link")
    sparse = stat_of(img, "/data/sparse")
    assert "Size: 1073741825" in sparse
    assert "Blockcount: 8" in sparse  # one 4 KiB block, not a GiB of zeros
    root = debugfs(img, "ls -l /")
    assert "lost+found" not in root
    assert "Mode:  0711" in stat_of(img, "/")
    # Added for every pod: /sys, /dev and the /etc targets; /proc is the image's link.
    assert "Type: directory" in stat_of(img, "/sys")
    assert "Type: directory" in stat_of(img, "/dev")
    assert "Type: symlink" in stat_of(img, "/proc")
    assert "Type: regular" in stat_of(img, "/etc/hosts")
    assert 'Fast link dest: "../proc/self/mounts"' in stat_of(img, "/etc/mtab")  # as stage0
    assert fsimage.pod_paths(tree / "rootfs")[2:] == (["sys", "dev"], ["hostname", "hosts"])
    # Sparse: the image costs what the tree holds, not its 8 GiB.
    assert img.stat().st_blocks * 512 < 64 << 20 < img.stat().st_size
    assert fsimage.disk_image(tree) == img  # built once


def test_an_empty_volumes_image_has_its_root_mode_and_owner(tmp_path: Path) -> None:
    img = fsimage.empty_image(tmp_path / "cache", 0o41777, 5, 6)
    root = stat_of(img, "/")
    assert "Mode:  01777" in root and "User:     5   Group:     6" in root
    names = [line.split()[-1] for line in debugfs(img, "ls -l /").splitlines() if line.strip()]
    assert names == [".", ".."]  # no lost+found, no pod paths: empty
