"""`--console-socket`: a pty for a `terminal: true` process, its master handed over.

As runc does, the runtime connects to the caller's unix socket and sends the pty
master as SCM_RIGHTS ancillary data, with the pty's name as the message; the caller
(containerd's shim, conmon) relays it. The runtime keeps the slave: it becomes the
stdio of QEMU (the guest's ttyS1, the container's terminal) or of an exec's relay.
"""

from __future__ import annotations

import os
import socket

from pyrkt.errors import RktError


def send_master(console_socket: str) -> int:
    """Open a pty, send its master to console_socket; the slave's fd (ours to keep)."""
    master, slave = os.openpty()
    try:
        name = os.ttyname(slave)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(console_socket)
            socket.send_fds(s, [name.encode()], [master])
    except OSError as e:
        os.close(slave)
        raise RktError(f"cannot send the terminal to --console-socket {console_socket}: "
                       f"{e.strerror or e}") from e
    finally:
        os.close(master)
    return slave


def take_terminal(slave: int) -> None:
    """Make slave this process's stdio and controlling terminal (a new session), so that
    window size changes on the caller's master reach us as SIGWINCH."""
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
