"""SIGTERM (and SIGHUP) handled like SIGINT while a piece of work must clean up after
itself: the signal raises `Terminated` in the main thread, so `finally` blocks and
context managers run (a fetch removes its staging) as they do for KeyboardInterrupt.

    with terminate_raises():
        ...                     # a SIGTERM here raises Terminated(signal.SIGTERM)

The CLI ends the process with the same signal afterwards (default action), so the
parent sees "killed by SIGTERM", as it would have without the handler. Outside the main
thread, or for a signal that is ignored or already handled by someone else, nothing is
installed. (No typing, no threading; imported by `Store.staging`, only when staging.)
"""

from __future__ import annotations

import signal

from pyrkt.errors import Terminated

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType, TracebackType

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


class terminate_raises:  # a context manager used as a function
    """While inside: SIGTERM/SIGHUP raise Terminated (where their action is the default)."""

    def __enter__(self) -> None:
        self._old: list[tuple[int, signal.Handlers]] = []
        for s in SIGNALS:
            if signal.getsignal(s) is not signal.SIG_DFL:
                continue
            try:
                signal.signal(s, _raise)
            except ValueError:  # not the main thread
                return
            self._old.append((s, signal.SIG_DFL))

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        for s, h in self._old:
            signal.signal(s, h)
