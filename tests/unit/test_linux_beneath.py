"""pyrkt.linux.beneath against each attack a guest can plant in a share it writes: a
symlink to a host file, to a host folder, to /dev/zero, a FIFO, a socket, a device node,
`..` and absolute paths, a symlinked folder on the way, a huge file, a deep tree. Every
test runs twice: with openat2 and with the O_NOFOLLOW-per-component fallback."""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyrkt.linux import beneath
from pyrkt.linux.beneath import Refused, Root


@pytest.fixture(params=[True, False], ids=["openat2", "nofollow-walk"])
def mode(request: pytest.FixtureRequest) -> Iterator[bool]:
    beneath.use_openat2(None if request.param else False)
    yield request.param
    beneath.use_openat2(None)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """What the host must never read or change through the share."""
    h = tmp_path / "host"
    h.mkdir()
    (h / "secret").write_text("7\n")
    (h / "dir").mkdir()
    (h / "dir" / "keep").write_text("keep\n")
    return h


@pytest.fixture
def share(tmp_path: Path, mode: bool) -> Path:
    s = tmp_path / "share"
    (s / "rkt" / "status").mkdir(parents=True)
    (s / "rkt" / "status" / "ok").write_text("3\n")
    return s


def stamp(d: Path) -> tuple[int, int, list[str]]:
    """A folder's mtime, ctime and names: any entry made or removed changes them."""
    st = d.stat()
    return st.st_mtime_ns, st.st_ctime_ns, sorted(os.listdir(d))


def test_a_plain_small_file_is_read(share: Path, mode: bool) -> None:
    with Root(share) as r:
        assert r.read("rkt/status/ok", 16) == b"3\n"
        assert r.read_text("rkt/status/ok") == "3\n"
        assert r.is_regular("rkt/status/ok")
        assert r.listdir("rkt/status") == ["ok"]
    assert beneath._openat2_works is mode  # the path under test


@pytest.mark.parametrize("target", ["ABS", "../../../host/secret", "/dev/zero"])
def test_a_symlinked_file_is_not_followed(share: Path, host: Path, target: str) -> None:
    link = share / "rkt" / "status" / "app"
    link.symlink_to(str(host / "secret") if target == "ABS" else target)
    with Root(share) as r:
        with pytest.raises(OSError) as e:
            r.read("rkt/status/app", 16)
        assert e.value.errno in (errno.ELOOP, errno.EINVAL)
        with pytest.raises(OSError):
            r.copy_to("rkt/status/app", os.open(os.devnull, os.O_WRONLY))
        assert not r.is_regular("rkt/status/app")
        assert stat.S_ISLNK(r.lstat("rkt/status/app").st_mode)


def test_a_symlinked_folder_on_the_way_is_not_followed(share: Path, host: Path) -> None:
    (share / "rkt" / "status").rename(share / "old")
    (share / "rkt" / "status").symlink_to(host)
    (host / "app").write_text("9\n")
    (share / "x").symlink_to(host)  # and as the first component
    with Root(share) as r:
        for rel in ("rkt/status/app", "x/secret", "x/dir/keep"):
            with pytest.raises(OSError) as e:
                r.read(rel, 16)
            assert e.value.errno in (errno.ELOOP, errno.ENOTDIR), rel
        with pytest.raises(OSError):
            r.listdir("rkt/status")
        with pytest.raises(OSError):
            r.open_dir("x")


@pytest.mark.parametrize("rel", ["../host/secret", "rkt/../../host/secret", "/etc/passwd",
                                 "rkt/status/../../.."])
def test_dotdot_and_absolute_paths_are_refused(share: Path, host: Path, rel: str) -> None:
    with Root(share) as r:
        with pytest.raises(OSError) as e:
            r.read(rel, 16)
        assert e.value.errno == errno.EXDEV
        with pytest.raises(OSError):
            r.write(rel, "x")
        with pytest.raises(OSError):
            r.mkdir(rel)
    assert (host / "secret").read_text() == "7\n"


def test_a_fifo_neither_blocks_nor_is_read(share: Path) -> None:
    os.mkfifo(share / "rkt" / "status" / "app")
    t = time.monotonic()
    with Root(share) as r:
        with pytest.raises(Refused, match="a FIFO"):
            r.read("rkt/status/app", 16)
        with pytest.raises(Refused):
            r.copy_to("rkt/status/app", 1)
    assert time.monotonic() - t < 60  # did not wait for a writer (it would forever)


def test_a_socket_is_refused(share: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(share / "rkt" / "status" / "app"))
        with Root(share) as r, pytest.raises(Refused, match="a socket"):
            r.read("rkt/status/app", 16)
    finally:
        s.close()


@pytest.mark.root
def test_a_device_node_is_refused_without_being_opened(share: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    os.mknod(share / "rkt" / "status" / "app", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    with Root(share) as r, pytest.raises(Refused, match="a character device"):
        r.read("rkt/status/app", 16)


def test_a_huge_file_is_refused_without_reading_it(share: Path) -> None:
    big = share / "rkt" / "status" / "app"
    with open(big, "wb") as f:
        f.truncate(64 << 30)  # sparse: 64 GiB of zeros
    with Root(share) as r:
        with pytest.raises(Refused) as e:
            r.read("rkt/status/app", 64)
        assert e.value.errno == errno.EFBIG
        r_fd, w_fd = os.pipe()
        try:
            assert r.copy_to("rkt/status/app", w_fd, limit=10) == 10
            assert os.read(r_fd, 100) == b"\0" * 10
        finally:
            os.close(r_fd)
            os.close(w_fd)


def test_copy_to_streams_the_size_at_open(share: Path, tmp_path: Path) -> None:
    (share / "out").write_bytes(b"x" * (3 << 20))
    dst = tmp_path / "dst"
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with Root(share) as r:
            assert r.copy_to("out", fd) == 3 << 20
    finally:
        os.close(fd)
    assert dst.read_bytes() == b"x" * (3 << 20)


def test_write_replaces_a_planted_symlink_instead_of_writing_through(share: Path,
                                                                     host: Path) -> None:
    (share / "cmd.sh").symlink_to(host / "secret")
    (share / "stdin-link").symlink_to(host / "secret")
    with Root(share) as r:
        r.write("cmd.sh", "echo hi\n", 0o600)
        with pytest.raises(FileExistsError):
            r.write("stdin-link", b"data", replace=False)
    assert (host / "secret").read_text() == "7\n"
    assert (share / "cmd.sh").read_text() == "echo hi\n"
    assert not (share / "cmd.sh").is_symlink()
    assert stat.S_IMODE((share / "cmd.sh").stat().st_mode) == 0o600
    assert sorted(p.name for p in share.iterdir()) == ["cmd.sh", "rkt", "stdin-link"]


def test_mkdir_and_write_through_a_symlinked_folder_are_refused(share: Path,
                                                               host: Path) -> None:
    (share / "enter").symlink_to(host / "dir")
    before = stamp(host / "dir")
    with Root(share) as r:
        with pytest.raises(OSError):
            r.mkdir("enter/abc")
        with pytest.raises(OSError):
            r.mkdir("enter", exist_ok=True)
        with pytest.raises(OSError):
            r.write("enter/cmd.sh", "x")
        with pytest.raises(OSError):
            r.mkdir("enter/a/b", parents=True)
        r.mkdir("fresh/a/b", parents=True)
        r.mkdir("fresh/a", exist_ok=True)
        with pytest.raises(FileExistsError):
            r.mkdir("fresh/a")
    assert stamp(host / "dir") == before
    assert (share / "fresh" / "a" / "b").is_dir()


def test_rmtree_unlinks_symlinks_and_keeps_what_they_point_to(share: Path,
                                                              host: Path) -> None:
    t = share / "tree"
    (t / "a" / "b").mkdir(parents=True)
    (t / "a" / "b" / "f").write_text("f")
    (t / "a" / "to-host-dir").symlink_to(host / "dir")
    (t / "to-secret").symlink_to(host / "secret")
    os.mkfifo(t / "a" / "fifo")
    (share / "top-link").symlink_to(host / "dir")
    before = stamp(host / "dir")
    with Root(share) as r:
        r.rmtree("tree")
        r.rmtree("top-link")  # the link itself goes, not the folder it names
        r.rmtree("absent")
        with pytest.raises(FileNotFoundError):
            r.rmtree("absent", missing_ok=False)
    assert not t.exists() and not (share / "top-link").is_symlink()
    assert stamp(host / "dir") == before and (host / "secret").read_text() == "7\n"


def test_rmtree_of_a_very_deep_tree(share: Path) -> None:
    # Deeper than Python's recursion limit and than a process's fd limit allows to hold.
    fd = os.open(share, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(3000):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.close(os.open("leaf", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    finally:
        os.close(fd)
    beneath.remove_tree(share / "d")
    assert not (share / "d").exists()


def test_listdir_is_bounded(share: Path) -> None:
    for i in range(20):
        (share / "rkt" / "status" / f"f{i}").write_text("")
    with Root(share) as r:
        assert len(r.listdir("rkt/status", limit=21)) == 21
        with pytest.raises(Refused):
            r.listdir("rkt/status", limit=5)


def test_the_root_itself_must_not_be_a_symlink(tmp_path: Path, host: Path) -> None:
    (tmp_path / "root-link").symlink_to(host)
    with pytest.raises(OSError):
        Root(tmp_path / "root-link")
