"""Host side of `rkt enter` with a terminal: relays our tty to a pty in the guest.

The guest's `rkt-exec --tty` allocates the pty and talks to us over the rkt.tty
virtio-serial port (QEMU: the unix socket `POD/kvm/tty.sock`) in frames of one type
byte, a 2-byte big-endian length and the payload (see `Frame`). Our terminal is in raw
mode for the session (Ctrl-C travels as a byte; the guest's pty makes it SIGINT) and
restored on every way out.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import select
import signal
import socket
import struct
import termios
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType as PyFrame

from pyrkt.errors import RktError

MAX_PAYLOAD = 0xFFFF
READY_TIMEOUT_S = 120.0
_HDR = struct.Struct(">cH")
_SEND_HIGH_WATER = 1 << 16  # stop reading our stdin while this much waits for the guest


class Frame(enum.StrEnum):
    READY = "R"  # guest -> host: the request id; the pty exists
    DATA = "D"  # both ways: terminal bytes
    EXIT = "X"  # guest -> host: the command's exit code (4 bytes, big-endian)
    WINSIZE = "W"  # host -> guest: rows, cols (2 bytes each)


def encode(kind: Frame, payload: bytes = b"") -> bytes:
    out = bytearray()
    for i in range(0, max(len(payload), 1), MAX_PAYLOAD):
        chunk = payload[i : i + MAX_PAYLOAD]
        out += _HDR.pack(kind.value.encode(), len(chunk)) + chunk
    return bytes(out)


def winsize_frame(rows: int, cols: int) -> bytes:
    return encode(Frame.WINSIZE, struct.pack(">HH", rows & 0xFFFF, cols & 0xFFFF))


@dataclass
class FrameReader:
    """Splits a byte stream into frames (fed in pieces of any size)."""

    buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[tuple[Frame, bytes]]:
        self.buf += data
        out: list[tuple[Frame, bytes]] = []
        while len(self.buf) >= _HDR.size:
            kind, n = _HDR.unpack_from(self.buf)
            if len(self.buf) < _HDR.size + n:
                break
            payload = bytes(self.buf[_HDR.size : _HDR.size + n])
            del self.buf[: _HDR.size + n]
            try:
                out.append((Frame(kind.decode("latin-1")), payload))
            except ValueError as e:
                raise RktError(f"the pod's VM sent an unknown terminal frame {kind!r}") from e
        return out


def terminal_size(fd: int) -> tuple[int, int]:
    try:
        rows, cols, _, _ = struct.unpack(
            "HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
        )
    except OSError:
        return 24, 80
    return rows or 24, cols or 80


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """fd's terminal in raw mode, restored on the way out (also on errors, SIGTERM, SIGHUP)."""
    saved = termios.tcgetattr(fd)

    def leave(signum: int, _frame: PyFrame | None) -> None:
        raise RktError(f"terminal session interrupted by {signal.Signals(signum).name}")

    old = {s: signal.signal(s, leave) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        tty.setraw(fd, termios.TCSADRAIN)
        yield
    finally:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for s, h in old.items():
            signal.signal(s, h)


def wait_ready(sock: socket.socket, rid: str, alive: Callable[[], bool]) -> bytes:
    """Until the guest's READY for rid; returns what came after it."""
    reader = FrameReader()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], 0.5)
        if not r:
            if not alive():
                raise RktError("the pod's VM is not running")
            continue
        data = sock.recv(65536)
        if not data:
            raise RktError("the pod's VM closed the terminal session before it started")
        for kind, payload in reader.feed(data):
            if kind is Frame.READY and payload.decode(errors="replace") == rid:
                return bytes(reader.buf)
    raise RktError(f"the pod's VM did not start the terminal session within "
                   f"{READY_TIMEOUT_S:.0f}s")


def relay(sock: socket.socket, in_fd: int, out_fd: int, pending: bytes = b"") -> int:
    """Copy in_fd (a terminal in raw mode) to the guest and the guest's output to out_fd
    until the guest sends the exit code; window size changes follow SIGWINCH."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    resized = [False]

    def on_winch(_signum: int, _frame: PyFrame | None) -> None:
        resized[0] = True

    old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    old_winch = signal.signal(signal.SIGWINCH, on_winch)
    sock.setblocking(False)
    sfd = sock.fileno()
    reader = FrameReader()
    to_guest = bytearray(winsize_frame(*terminal_size(in_fd)))
    stdin_open = True
    try:
        frames = reader.feed(pending)
        while True:
            for kind, payload in frames:
                if kind is Frame.DATA:
                    _write_all(out_fd, payload)
                elif kind is Frame.EXIT and len(payload) == 4:
                    return int(struct.unpack(">i", payload)[0])
            frames = []
            rlist = [sfd, wake_r]
            if stdin_open and len(to_guest) < _SEND_HIGH_WATER:
                rlist.append(in_fd)
            r, w, _ = select.select(rlist, [sfd] if to_guest else [], [])
            if wake_r in r:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
            if resized[0]:  # before what was typed after the resize
                resized[0] = False
                to_guest += winsize_frame(*terminal_size(in_fd))
            if sfd in r:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    data = None
                if data == b"":
                    raise RktError("the pod's VM ended the terminal session (did the pod stop?)")
                if data:
                    frames = reader.feed(data)
            if in_fd in r:
                data = os.read(in_fd, 4096)
                if data:
                    to_guest += encode(Frame.DATA, data)
                else:
                    stdin_open = False
            if sfd in w and to_guest:
                with contextlib.suppress(BlockingIOError):
                    del to_guest[: sock.send(to_guest)]
    finally:
        signal.signal(signal.SIGWINCH, old_winch)
        signal.set_wakeup_fd(old_wakeup)
        os.close(wake_r)
        os.close(wake_w)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
