"""A pod's network namespace: created with `ip netns add` (bind mount under /run/netns),
`lo` brought up, removed idempotently; and ways to run things inside it.

- `create_netns(name) -> Path`, `delete_netns(path)`, `netns_alive(path)`
- `netns_exec_argv(path)`: an argv prefix (`nsenter --net=PATH --`) for a command that
  must live in the namespace (QEMU, a test server); `preexec_setns(path)` for Popen.
- `in_netns(path)`: a context manager moving the *current thread* into the namespace.
- `host_namespaces()`: a context manager for a stage1 that unshares or joins namespaces
  in its own process (mount, pid, net): on exit it returns to the namespaces it had on
  entry, so teardown afterwards runs CNI DEL, iptables and `ip netns delete` on the host
  (and can fork again: a process whose pid namespace for children has lost its init
  gets ENOMEM from fork).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from pyrkt import proc
from pyrkt.errors import RktError

NETNS_DIR = Path("/run/netns")


def netns_name(uuid: str) -> str:
    return f"rkt-{uuid}"


def create_netns(name: str) -> Path:
    """Create /run/netns/NAME with `lo` up; fails if it exists."""
    path = NETNS_DIR / name
    if path.exists():
        raise RktError(f"network namespace {path} already exists", "run `rkt gc` first")
    proc.run(["ip", "netns", "add", name], capture=True)
    try:
        proc.run(["ip", "-n", name, "link", "set", "lo", "up"], capture=True)
    except RktError:
        delete_netns(path)
        raise
    return path


def delete_netns(path: Path) -> None:
    """Unmount and remove a namespace file; nothing if it is gone already."""
    if not path.exists():
        return
    if path.parent == NETNS_DIR:
        cp = proc.run(["ip", "netns", "delete", path.name], check=False, capture=True)
        if cp.returncode == 0 or not path.exists():
            return
    proc.run(["umount", "-l", path], check=False, capture=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def netns_alive(path: Path) -> bool:
    """Whether path holds a live namespace (a bind-mounted nsfs file): a namespace
    mounted in a mount namespace that is gone (a killed pod's) leaves a plain file."""
    try:
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    except OSError:
        return False


def netns_exec_argv(path: Path) -> list[str]:
    """argv prefix that runs the rest of argv inside the namespace."""
    return ["nsenter", f"--net={path}", "--"]


def preexec_setns(path: Path) -> Callable[[], None]:
    """A `preexec_fn` for subprocess.Popen that moves the child into the namespace.

    The child opens the namespace file and calls setns(2) before exec.
    """

    from pyrkt.linux.netns import setns_path

    def _enter() -> None:
        setns_path(path)

    return _enter


@contextlib.contextmanager
def in_netns(path: Path) -> Iterator[None]:
    """Run the body with the current thread in the namespace, then return to the old one."""
    from pyrkt.linux.netns import setns, setns_path

    old = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns_path(path)
        try:
            yield
        finally:
            setns(old)
    finally:
        os.close(old)


@contextlib.contextmanager
def host_namespaces() -> Iterator[None]:
    """Return to this process's current net, mount and pid namespaces when the body ends.

    Call it in a single-threaded process (setns on a mount namespace requires that).
    """
    from pyrkt.linux.netns import CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, setns

    kinds = (("net", CLONE_NEWNET), ("mnt", CLONE_NEWNS), ("pid", CLONE_NEWPID))
    fds = [(os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), t) for name, t in kinds]
    try:
        yield
    finally:
        try:
            for fd, t in fds:
                if t == CLONE_NEWPID and os.readlink("/proc/self/ns/pid_for_children") == (
                    os.readlink("/proc/self/ns/pid")
                ):
                    continue
                setns(fd, t)
        except OSError as e:
            raise RktError(f"cannot return to the host namespaces: {e}") from e
        finally:
            for fd, _ in fds:
                os.close(fd)
