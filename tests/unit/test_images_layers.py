"""Applying tar layers: contents, whiteouts, compression, and hostile layers."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from pyrkt.image.layers import LayerError, apply_layer

Add = Callable[[tarfile.TarFile], None]


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", *,
          link: str = "", mode: int = 0o644, mtime: int = 1_600_000_000) -> Add:  # fmt: skip
    def add(tf: tarfile.TarFile) -> None:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = mode
        ti.mtime = mtime
        ti.linkname = link
        ti.size = len(data) if kind == tarfile.REGTYPE else 0
        tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

    return add


def layer(*entries: Add, compress: str = "") -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for add in entries:
            add(tf)
    data = buf.getvalue()
    if compress == "gzip":
        data = gzip.compress(data)
    elif compress == "zstd":
        data = zstandard.ZstdCompressor().compress(data)
    return io.BytesIO(data)


@pytest.fixture
def box(tmp_path: Path) -> tuple[Path, Path]:
    """A root to extract into and a sibling 'outside' dir that must stay untouched."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "victim").write_text("original")
    return root, outside


def untouched(outside: Path) -> bool:
    return sorted(p.name for p in outside.iterdir()) == ["victim"] and (
        (outside / "victim").read_text() == "original"
    )


@pytest.mark.parametrize("compress", ["", "gzip", "zstd"])
def test_files_dirs_links_modes_and_mtimes(box: tuple[Path, Path], compress: str) -> None:
    root, _ = box
    apply_layer(
        layer(
            entry("bin", tarfile.DIRTYPE, mode=0o755, mtime=1_500_000_000),
            entry("bin/tool", data=b"#!/bin/sh\n", mode=0o4755),
            entry("bin/alias", tarfile.SYMTYPE, link="tool"),
            entry("bin/hard", tarfile.LNKTYPE, link="bin/tool"),
            entry("etc/conf", data=b"x=1\n"),
            compress=compress,
        ),
        root,
    )
    tool = root / "bin" / "tool"
    assert tool.read_bytes() == b"#!/bin/sh\n"
    assert tool.stat().st_mode & 0o7777 == 0o4755
    assert tool.stat().st_mtime == 1_600_000_000
    assert os.readlink(root / "bin" / "alias") == "tool"
    assert (root / "bin" / "hard").stat().st_ino == tool.stat().st_ino
    assert (root / "etc" / "conf").read_text() == "x=1\n"
    assert (root / "bin").stat().st_mtime == 1_500_000_000


def test_whiteouts_remove_lower_files_and_opaque_dirs(box: tuple[Path, Path]) -> None:
    root, _ = box
    apply_layer(
        layer(
            entry("a/keep", data=b"1"),
            entry("a/gone", data=b"2"),
            entry("d/old1", data=b"3"),
            entry("d/sub/old2", data=b"4"),
        ),
        root,
    )
    apply_layer(
        layer(
            entry("a/.wh.gone"),
            entry("d", tarfile.DIRTYPE, mode=0o755),
            entry("d/new", data=b"5"),
            entry("d/.wh..wh..opq"),
            entry(".wh.nothing-there"),
        ),
        root,
    )
    assert sorted(p.name for p in (root / "a").iterdir()) == ["keep"]
    assert sorted(p.name for p in (root / "d").iterdir()) == ["new"]
    assert not list(root.rglob(".wh.*"))


def test_file_replaces_symlink_instead_of_writing_through_it(box: tuple[Path, Path]) -> None:
    root, outside = box
    target = str(outside / "victim")
    apply_layer(layer(entry("evil", tarfile.SYMTYPE, link=target)), root)
    apply_layer(layer(entry("evil", data=b"pwned")), root)
    assert (root / "evil").read_bytes() == b"pwned"
    assert not (root / "evil").is_symlink()
    assert untouched(outside)


HOSTILE: dict[str, list[Add]] = {
    "dotdot": [entry("../outside/pwned", data=b"x")],
    "dotdot-deep": [entry("a/../../outside/pwned", data=b"x")],
    "abs-symlink-dir": [
        entry("esc", tarfile.SYMTYPE, link="/OUTSIDE"),
        entry("esc/pwned", data=b"x"),
    ],
    "rel-symlink-dir": [
        entry("esc", tarfile.SYMTYPE, link="../outside"),
        entry("esc/pwned", data=b"x"),
    ],
    "symlink-dir-then-dir": [
        entry("esc", tarfile.SYMTYPE, link="../outside"),
        entry("esc/sub", tarfile.DIRTYPE),
    ],
    "hardlink-dotdot": [entry("h", tarfile.LNKTYPE, link="../outside/victim")],
    "hardlink-through-symlink": [
        entry("esc", tarfile.SYMTYPE, link="../outside"),
        entry("h", tarfile.LNKTYPE, link="esc/victim"),
    ],
    "symlink-in-parent-chain": [
        entry("a", tarfile.DIRTYPE),
        entry("a/b", tarfile.SYMTYPE, link="../../outside"),
        entry("a/b/c/pwned", data=b"x"),
    ],
    "whiteout-through-symlink": [
        entry("esc", tarfile.SYMTYPE, link="../outside"),
        entry("esc/.wh.victim"),
    ],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layers_never_write_outside_the_root(box: tuple[Path, Path], case: str) -> None:
    root, outside = box
    entries = [
        (entry("esc", tarfile.SYMTYPE, link=str(outside)) if e is HOSTILE[case][0] and
         case == "abs-symlink-dir" else e)
        for e in HOSTILE[case]
    ]  # fmt: skip
    try:
        apply_layer(layer(*entries), root)
    except LayerError as e:
        assert "layer entry" in str(e)
    assert untouched(outside)
    # hardlinks resolved inside the root never share an inode with the victim
    victim_ino = (outside / "victim").stat().st_ino
    assert all(p.lstat().st_ino != victim_ino for p in root.rglob("*"))


def test_dotdot_and_symlinked_dir_are_refused_with_a_clear_message(box: tuple[Path, Path]) -> None:
    root, outside = box
    with pytest.raises(LayerError, match=r"escapes the image root"):
        apply_layer(layer(entry("../outside/pwned", data=b"x")), root)
    with pytest.raises(LayerError, match=r"not a directory; refusing to write through it"):
        apply_layer(
            layer(entry("esc", tarfile.SYMTYPE, link=str(outside)), entry("esc/f", data=b"x")),
            root,
        )
    assert untouched(outside)


def test_absolute_member_names_land_inside_the_root(box: tuple[Path, Path]) -> None:
    root, outside = box
    apply_layer(layer(entry(str(outside / "victim"), data=b"inside")), root)
    assert untouched(outside)
    assert (root / str(outside / "victim").lstrip("/")).read_bytes() == b"inside"


def test_corrupt_layer_is_a_layer_error(box: tuple[Path, Path]) -> None:
    root, _ = box
    data = layer(entry("f", data=b"x" * 5000), compress="gzip").getvalue()
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(data[: len(data) // 2]), root)


def test_replacements_between_and_within_layers_leak_no_fds(box: tuple[Path, Path]) -> None:
    root, _ = box
    fds_before = len(os.listdir("/proc/self/fd"))
    apply_layer(
        layer(
            entry("d/sub/f", data=b"1"),
            entry("file-then-dir", data=b"x"),
            entry("dir-then-file/inner", data=b"y"),
        ),
        root,
    )
    apply_layer(
        layer(
            entry("file-then-dir", tarfile.DIRTYPE, mode=0o750),
            entry("file-then-dir/child", data=b"c"),
            entry("dir-then-file", data=b"now a file"),
            entry("d/sub/f", data=b"2"),
            entry("d/sub", tarfile.SYMTYPE, link="/elsewhere"),
            entry("d/after", data=b"3"),
        ),
        root,
    )
    assert (root / "file-then-dir" / "child").read_bytes() == b"c"
    assert (root / "file-then-dir").stat().st_mode & 0o777 == 0o750
    assert (root / "dir-then-file").read_bytes() == b"now a file"
    assert os.readlink(root / "d" / "sub") == "/elsewhere"
    assert (root / "d" / "after").read_bytes() == b"3"
    assert len(os.listdir("/proc/self/fd")) == fds_before


@pytest.mark.root
def test_device_nodes_fifos_and_ownership(box: tuple[Path, Path]) -> None:
    import stat

    root, _ = box

    def node(name: str, kind: bytes, major: int = 0, minor: int = 0) -> Add:
        def add(tf: tarfile.TarFile) -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.devmajor, ti.devminor = kind, 0o620, major, minor
            ti.uid, ti.gid = 1000, 5
            tf.addfile(ti)

        return add

    apply_layer(layer(node("dev/null", tarfile.CHRTYPE, 1, 3),
                      node("run/fifo", tarfile.FIFOTYPE)), root)  # fmt: skip
    st = (root / "dev" / "null").lstat()
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 5, 0o620)
    assert stat.S_ISFIFO((root / "run" / "fifo").lstat().st_mode)


def test_opaque_whiteout_after_children_keeps_this_layers_children(
    box: tuple[Path, Path],
) -> None:
    root, _ = box
    apply_layer(layer(entry("d/old/file", data=b"lower")), root)
    apply_layer(layer(entry("d/new/file", data=b"upper"), entry("d/.wh..wh..opq")), root)
    assert sorted(p.name for p in (root / "d").iterdir()) == ["new"]
    assert (root / "d" / "new" / "file").read_bytes() == b"upper"


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_long_names_big_files_and_both_header_formats(tmp_path: Path, fmt: int) -> None:
    root = tmp_path / "root"
    root.mkdir()
    deep = "/".join(f"directory-{i:02d}" for i in range(12))  # > 100 characters
    big = os.urandom(3 << 20) + b"tail"  # spans several decompressed chunks
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data in ((f"{deep}/file", b"deep"), ("big", big), ("small", b"s")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        ln = tarfile.TarInfo("link-with-a-long-target")
        ln.type = tarfile.SYMTYPE
        ln.linkname = f"{deep}/file"
        tf.addfile(ln)
    size = apply_layer(io.BytesIO(gzip.compress(buf.getvalue())), root)
    assert (root / deep / "file").read_bytes() == b"deep"
    assert (root / "big").read_bytes() == big
    assert (root / "small").read_bytes() == b"s"
    assert os.readlink(root / "link-with-a-long-target") == f"{deep}/file"
    assert 3 << 20 < size <= len(buf.getvalue())


def test_concatenated_gzip_members_and_zero_padding_are_one_layer(
    box: tuple[Path, Path],
) -> None:
    root, _ = box
    plain = layer(entry("a", data=b"A" * 5000), entry("b", data=b"B")).getvalue()
    half = len(plain) // 2
    data = gzip.compress(plain[:half]) + gzip.compress(plain[half:]) + b"\0" * 1024
    apply_layer(io.BytesIO(data), root)
    assert (root / "a").read_bytes() == b"A" * 5000
    assert (root / "b").read_bytes() == b"B"


@pytest.mark.parametrize("compress", ["", "gzip", "zstd"])
def test_truncated_layer_is_a_layer_error(box: tuple[Path, Path], compress: str) -> None:
    root, _ = box
    plain = layer(entry("big", data=os.urandom(200_000)), entry("after", data=b"x")).getvalue()
    cut = plain[:100_000]
    data = gzip.compress(cut) if compress == "gzip" else \
        zstandard.ZstdCompressor().compress(cut) if compress == "zstd" else cut
    with pytest.raises(LayerError, match="cannot apply layer"):
        apply_layer(io.BytesIO(data), root)
    assert not (root / "after").exists()


def test_compressed_stream_cut_short_is_a_layer_error(box: tuple[Path, Path]) -> None:
    root, _ = box
    data = layer(entry("f", data=os.urandom(100_000)), compress="gzip").getvalue()
    with pytest.raises(LayerError, match="cannot apply layer"):
        apply_layer(io.BytesIO(data[: len(data) - 100]), root)
