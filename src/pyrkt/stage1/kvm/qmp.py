"""A minimal QMP client (QEMU Machine Protocol) over a connected socket.

The kvm stage1 talks QMP to save a template and to restore a pod from one (templates/):
a handful of commands on a socketpair whose other end QEMU got as a file descriptor
(`-chardev socket,fd=N,server=off -mon chardev=...,mode=control`), so there is no
socket path to race for. It is not QEMU's own client (`qemu.qmp` on PyPI) on purpose:
that one is built on asyncio, and importing it took 43 ms here (`python -X importtime
-c 'import qemu.qmp.legacy'`, 2026-12), a tenth of a templated `rkt run`; this needs
`json` and `socket` only.

QEMU is the process a guest would take over first, so its replies are bounded: one
line of at most MAX_LINE bytes, within the caller's deadline.

Errors: `QmpError` (an `RktError`) for everything: QEMU's error replies (with QEMU's
class and description), a closed connection, a timeout, a reply that is not QMP.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Sequence

from pyrkt.errors import RktError

MAX_LINE = 1 << 20
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class QmpError(RktError):
    """A QMP command failed, or the connection did."""


class Qmp:
    """One QMP session: `handshake()` once, then `execute()` commands in turn; or
    `send()` several at once and collect each `reply()` in order (a pipeline: one round
    trip for all, and commands sent before QEMU is up are answered as soon as it is).

    Events QEMU sends meanwhile are kept, in order, in `events` (their names);
    `wait_event()` waits for one."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self.events: list[str] = []
        self._unseen: list[dict[str, Any]] = []  # events no wait_event took yet
        self._buf = b""
        self._id = 0
        self._sent: dict[int, str] = {}  # id -> command, of the replies not read yet

    def handshake(self) -> dict[str, Any]:
        """Read QEMU's greeting and leave capabilities negotiation mode; the greeting."""
        greeting = self.greeting()
        self.execute("qmp_capabilities")
        return greeting

    def greeting(self) -> dict[str, Any]:
        """QEMU's greeting (the first message; commands may have been sent before it:
        the first of them must be `qmp_capabilities`)."""
        greeting = self._read()
        if not isinstance(greeting.get("QMP"), dict):
            raise QmpError(f"not a QMP greeting: {_short(greeting)}")
        return greeting

    def execute(self, command: str, args: dict[str, Any] | None = None,
                fds: Sequence[int] = ()) -> Any:
        """Run command; its "return" value. fds go along (SCM_RIGHTS), as `getfd` needs."""
        return self.reply(self.send(command, args, fds))

    def send(self, command: str, args: dict[str, Any] | None = None,
             fds: Sequence[int] = ()) -> int:
        """Send command without waiting for its reply; its id, for `reply()`."""
        self._id += 1
        msg: dict[str, Any] = {"execute": command, "id": self._id}
        if args:
            msg["arguments"] = args
        # compact: QEMU 7.2's monitor reads its input one byte per main-loop turn (~4 us
        # a byte here), so every byte sent is time (a pod's disks: ~1 KB of blockdev-add)
        data = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        try:
            if fds:
                socket.send_fds(self.sock, [data], list(fds))
            else:
                self.sock.sendall(data)
        except OSError as e:
            raise QmpError(f"QMP {command}: cannot send: {e}") from e
        self._sent[self._id] = command
        return self._id

    def reply(self, sent: int) -> Any:
        """The "return" value of the command `send()` gave that id; the replies of the
        commands sent before it must have been read (QEMU answers in order)."""
        if self._sent and min(self._sent) < sent:
            raise QmpError(f"QMP {self._sent.get(sent, '?')}: the replies before it were "
                           "not read")
        command = self._sent.pop(sent, "?")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if "event" in reply:
                self._event(reply)
                continue
            if reply.get("id") != sent:
                raise QmpError(f"QMP {command}: unexpected reply {_short(reply)}")
            if "error" in reply:
                err = reply["error"] if isinstance(reply["error"], dict) else {}
                raise QmpError(f"QMP {command}: {err.get('class', 'error')}: "
                               f"{err.get('desc', _short(reply))}")
            if "return" not in reply:
                raise QmpError(f"QMP {command}: unexpected reply {_short(reply)}")
            return reply["return"]

    def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        """The data of the next event `name` (one that came meanwhile counts), within
        timeout; QmpError when none came (or a reply came instead: nothing is pending
        while one waits)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self._unseen):
                if ev.get("event") == name:
                    del self._unseen[: i + 1]
                    data = ev.get("data")
                    return data if isinstance(data, dict) else {}
            self._unseen.clear()
            msg = self._read(deadline, f"no {name} event from QEMU within {timeout:.0f}s")
            if "event" not in msg:
                raise QmpError(f"QMP: unexpected reply {_short(msg)} while waiting for {name}")
            self._event(msg)

    def _event(self, msg: dict[str, Any]) -> None:
        self.events.append(str(msg["event"]))
        self._unseen.append(msg)

    def _read(self, deadline: float | None = None, late: str = "") -> dict[str, Any]:
        """The next message (one JSON object on one line); late: the error's words when
        none came by the deadline."""
        deadline = deadline if deadline is not None else time.monotonic() + self.timeout
        while b"\n" not in self._buf:
            if len(self._buf) > MAX_LINE:
                raise QmpError(f"QMP: a line longer than {MAX_LINE} bytes")
            left = deadline - time.monotonic()
            if left <= 0:
                raise QmpError("QMP: " + (late or f"no answer from QEMU within "
                                                     f"{self.timeout:.0f}s"))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as e:
                raise QmpError(f"QMP: {e}") from e
            if not chunk:
                raise QmpError("QMP: QEMU closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError:
            raise QmpError(f"QMP: not JSON: {line[:200]!r}") from None
        if not isinstance(msg, dict):
            raise QmpError(f"QMP: not an object: {line[:200]!r}")
        return msg


def _short(msg: object) -> str:
    text = json.dumps(msg)
    return text if len(text) <= 200 else text[:200] + "..."
