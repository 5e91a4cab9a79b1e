"""The guest agent's answers are hostile input: `rkt stop`/`rkt enter` read one short
line from it, never an unbounded stream (a guest agent on POD/kvm/agent.sock, played
here by a thread)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from pyrkt.errors import RktError
from pyrkt.stage1.kvm import agent


def serve_once(pod: Path, reply: bytes) -> threading.Thread:
    (pod / "kvm").mkdir(parents=True)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(pod / "kvm" / "agent.sock"))
    srv.listen(1)

    def run() -> None:
        conn, _ = srv.accept()
        try:
            conn.recv(4096)
            sent = 0
            while sent < len(reply):  # until the host stops reading
                sent += conn.send(reply[sent:sent + 65536])
        except OSError:
            pass
        finally:
            conn.close()
            srv.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_an_endless_answer_is_cut_short(tmp_path: Path) -> None:
    t = serve_once(tmp_path, b"x" * (64 << 20))  # 64 MiB, no newline
    with pytest.raises(RktError, match="over-long answer"):
        agent.stop(tmp_path, timeout=30)
    t.join(timeout=30)


def test_a_short_answer_is_read(tmp_path: Path) -> None:
    t = serve_once(tmp_path, b"ok\n")
    agent.stop(tmp_path, timeout=30)
    t.join(timeout=30)
