"""The template protocol a stage1 image's guest speaks (kvm/template-protocol, written
by the stage1 build) against this rkt's (shape.PROTOCOL): a template only when they
match; an image that does not say, says another, or says it in a file that is no plain
small number (the image, and the pod's copy of it, are hostile) gets none."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pyrkt.stage1.kvm import assets, templates
from pyrkt.stage1.kvm.templates import shape

REL = Path(assets.ASSET_DIR) / assets.PROTOCOL


def stage1_rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / assets.ASSET_DIR).mkdir(parents=True)
    return root


def test_an_image_that_speaks_this_rkt_s_protocol_gets_templates(tmp_path: Path) -> None:
    root = stage1_rootfs(tmp_path)
    (root / REL).write_text(f"{shape.PROTOCOL}\n")
    assert templates.guest_protocol(root) == shape.PROTOCOL
    assert templates.skew(root) == ""


def test_an_image_that_speaks_another_gets_none(tmp_path: Path) -> None:
    root = stage1_rootfs(tmp_path)
    (root / REL).write_text(f"{shape.PROTOCOL - 1}\n")
    assert templates.guest_protocol(root) == shape.PROTOCOL - 1
    assert templates.skew(root) == (
        f"the stage1 image's guest speaks template protocol {shape.PROTOCOL - 1}, this rkt "
        f"speaks {shape.PROTOCOL}; rebuild the image with `rkt stage1 build`")


def test_an_image_from_before_images_said_it_gets_none(tmp_path: Path) -> None:
    root = stage1_rootfs(tmp_path)
    (root / assets.ASSET_DIR / assets.KVER).write_text("6.1.0\n")
    assert templates.guest_protocol(root) is None
    assert templates.skew(root) == (
        "the stage1 image's guest does not say which template protocol it speaks, this "
        f"rkt speaks {shape.PROTOCOL}; rebuild the image with `rkt stage1 build`")
    assert templates.skew(tmp_path / "no-such-rootfs") != ""


def _link_to_a_host_file(root: Path) -> None:
    host = root.parent / "host-file"
    host.write_text(f"{shape.PROTOCOL}\n")  # what the link would say if it were followed
    (root / REL).symlink_to(host)


def _link_the_folder(root: Path) -> None:
    elsewhere = root.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / assets.PROTOCOL).write_text(f"{shape.PROTOCOL}\n")
    (root / assets.ASSET_DIR).rmdir()
    (root / assets.ASSET_DIR).symlink_to(elsewhere)


@pytest.mark.parametrize("plant", [
    lambda root: (root / REL).write_bytes(f"{shape.PROTOCOL}\n".encode() + b" " * (1 << 20)),
    lambda root: (root / REL).write_bytes(b"three\n"),
    lambda root: (root / REL).write_bytes(b"\xff\xfe\x00"),
    lambda root: (root / REL).write_bytes(f"-{shape.PROTOCOL}".encode()),
    lambda root: (root / REL).write_bytes(f"{shape.PROTOCOL}.0".encode()),
    lambda root: (root / REL).write_bytes("\u0663".encode()),  # an Arabic-Indic three
    lambda root: (root / REL).write_bytes(b""),
    _link_to_a_host_file,
    _link_the_folder,
    lambda root: os.mkfifo(root / REL),  # must not block
    lambda root: (root / REL).mkdir(),
], ids=["oversized", "words", "binary", "negative", "decimal-point", "unicode-digit",
        "empty", "symlink", "symlinked-folder", "fifo", "folder"])
def test_a_file_that_is_no_small_plain_number_says_nothing(
        tmp_path: Path, plant: Callable[[Path], object]) -> None:
    root = stage1_rootfs(tmp_path)
    plant(root)
    assert templates.guest_protocol(root) is None
    assert "does not say which template protocol" in templates.skew(root)
