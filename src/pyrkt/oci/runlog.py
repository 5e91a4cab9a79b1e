"""The runtime's log (`--log FILE --log-format text|json`), as runc writes it.

containerd's shim reads the last `"level":"error"` record of a JSON log to report why a
command failed, so with `json` every line is one record. The container process (the
VM's runner) sends what pyrkt's modules print on `sys.stderr` here too, one record per
line, since its real stderr is the container's.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time


class RuntimeLog:
    def __init__(self, path: str | None, fmt: str = "text", debug: bool = False) -> None:
        self.path = path
        self.json = fmt == "json"
        self.debug_on = debug

    def write(self, level: str, msg: str) -> None:
        if not self.path:
            return
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.json:
            line = json.dumps({"level": level, "msg": msg, "time": now})
        else:
            line = f'time="{now}" level={level} msg={json.dumps(msg)}'
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
        except OSError:
            return
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def error(self, msg: str) -> None:
        self.write("error", msg)

    def child_failed(self, msg: str) -> None:
        """A forked process of ours failed: an error record, and one line on fd 2 (the
        container's or exec's stderr, whose reader has no other way to learn why)."""
        self.error(msg)
        with contextlib.suppress(OSError):
            os.write(2, f"rkt-runtime: {msg}\n".encode())

    def warn(self, msg: str) -> None:
        self.write("warning", msg)

    def info(self, msg: str) -> None:
        self.write("info", msg)

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self.write("debug", msg)

    def stream(self) -> LogStream:
        return LogStream(self)


class LogStream(io.TextIOBase):
    """A text stream whose lines become log records (for `sys.stderr`)."""

    def __init__(self, log: RuntimeLog) -> None:
        super().__init__()
        self.log = log
        self.pending = ""

    def write(self, s: str) -> int:
        self.pending += s
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            if line.strip():
                self.log.write("warning" if "warning:" in line else "info", line)
        return len(s)

    def flush(self) -> None:
        pass
