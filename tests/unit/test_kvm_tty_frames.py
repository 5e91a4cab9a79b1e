"""The terminal protocol of `rkt enter` into a VM pod (frames) and the guest command line
for a terminal session, without a VM."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from pyrkt.errors import RktError
from pyrkt.stage1.kvm import ttysession as t
from pyrkt.stage1.kvm.agent import TTY_PORT, tty_command
from pyrkt.stage1.kvm.guest import script
from pyrkt.stage1.plan import AppPlan


def test_frames_survive_any_split() -> None:
    stream = (t.encode(t.Frame.READY, b"r1") + t.encode(t.Frame.DATA, b"x" * 70000)
              + t.encode(t.Frame.EXIT, b"\0\0\0\7"))
    for step in (1, 2, 3, 4096):
        reader = t.FrameReader()
        got = []
        for i in range(0, len(stream), step):
            got += reader.feed(stream[i : i + step])
        assert [k for k, _ in got] == [t.Frame.READY, t.Frame.DATA, t.Frame.DATA, t.Frame.EXIT]
        assert b"".join(p for k, p in got if k is t.Frame.DATA) == b"x" * 70000
        assert got[0][1] == b"r1"


def test_winsize_frame_is_rows_then_cols() -> None:
    assert t.winsize_frame(33, 101) == b"W\x00\x04\x00\x21\x00\x65"


def test_unknown_frame_is_an_error() -> None:
    with pytest.raises(RktError, match="unknown terminal frame"):
        t.FrameReader().feed(b"Q\x00\x00")


def test_tty_command_adds_the_tty_flags_and_our_term_before_the_apps_env() -> None:
    app = AppPlan(name="web", rootfs=Path("/"), argv=("x",),
                  env=(("PATH", "/bin"), ("GREETING", "a b")), working_dir="/srv")
    prefix = script.exec_line(app, argv=())
    line = tty_command(prefix, "abc", ["/bin/sh", "-c", "echo 'hi'"], "xterm")
    words = shlex.split(line)
    assert words[:4] == ["exec", "env", "-i", "TERM=xterm"]
    assert "GREETING=a b" in words
    i = words.index("--tty")
    assert words[i - 1] == "/bin/rkt-exec"
    assert words[i + 1 : i + 3] == [TTY_PORT, "abc"]
    # in the app's mount namespace, joined
    assert words[i + 3 : i + 7] == ["--ns", script.ns_file(app), script.guest_rootfs(app), "/srv"]
    assert words[-4:] == ["--", "/bin/sh", "-c", "echo 'hi'"]


def test_tty_command_refuses_a_foreign_prefix() -> None:
    with pytest.raises(RktError, match="exec line"):
        tty_command("/bin/sh -c true", "abc", ["sh"], None)
