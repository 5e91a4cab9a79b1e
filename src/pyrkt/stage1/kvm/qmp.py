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
    """One QMP session: `handshake()` once, then `execute()` commands in turn.

    Events QEMU sends meanwhile are kept, in order, in `events` (their names)."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self.events: list[str] = []
        self._buf = b""
        self._id = 0

    def handshake(self) -> dict[str, Any]:
        """Read QEMU's greeting and leave capabilities negotiation mode; the greeting."""
        greeting = self._read()
        if not isinstance(greeting.get("QMP"), dict):
            raise QmpError(f"not a QMP greeting: {_short(greeting)}")
        self.execute("qmp_capabilities")
        return greeting

    def execute(self, command: str, args: dict[str, Any] | None = None,
                fds: Sequence[int] = ()) -> Any:
        """Run command; its "return" value. fds go along (SCM_RIGHTS), as `getfd` needs."""
        self._id += 1
        msg: dict[str, Any] = {"execute": command, "id": self._id}
        if args:
            msg["arguments"] = args
        data = json.dumps(msg).encode() + b"\n"
        try:
            if fds:
                socket.send_fds(self.sock, [data], list(fds))
            else:
                self.sock.sendall(data)
        except OSError as e:
            raise QmpError(f"QMP {command}: cannot send: {e}") from e
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if "event" in reply:
                self.events.append(str(reply["event"]))
                continue
            if reply.get("id") != self._id:
                raise QmpError(f"QMP {command}: unexpected reply {_short(reply)}")
            if "error" in reply:
                err = reply["error"] if isinstance(reply["error"], dict) else {}
                raise QmpError(f"QMP {command}: {err.get('class', 'error')}: "
                               f"{err.get('desc', _short(reply))}")
            if "return" not in reply:
                raise QmpError(f"QMP {command}: unexpected reply {_short(reply)}")
            return reply["return"]

    def _read(self, deadline: float | None = None) -> dict[str, Any]:
        """The next message (one JSON object on one line)."""
        deadline = deadline if deadline is not None else time.monotonic() + self.timeout
        while b"\n" not in self._buf:
            if len(self._buf) > MAX_LINE:
                raise QmpError(f"QMP: a line longer than {MAX_LINE} bytes")
            left = deadline - time.monotonic()
            if left <= 0:
                raise QmpError(f"QMP: no answer from QEMU within {self.timeout:.0f}s")
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
