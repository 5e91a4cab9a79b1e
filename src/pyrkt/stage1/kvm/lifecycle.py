"""`stop` and `gc` for the kvm flavor."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from pyrkt import log
from pyrkt.stage1 import contract
from pyrkt.stage1.kvm import agent, runner


def hypervisor_pid(pod: Path) -> int | None:
    """POD/pid if that process is still a hypervisor (not a recycled pid)."""
    try:
        pid = int(contract.pid_file(pod).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    exe = cmdline.split(b"\0", 1)[0]
    # rkt-jail: the launcher, for the moment before it execs the hypervisor
    return pid if any(n in exe for n in (b"qemu", b"lkvm", b"rkt-jail")) else None


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie child of someone else still answers kill(0): check its state.
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
                return True
        except (OSError, IndexError):
            return True
        time.sleep(0.1)
    return False


def stop(pod: Path, *, force: bool) -> int:
    """Graceful: the agent SIGTERMs the apps and the VM powers off; --force kills QEMU
    and the stage1 process `rkt run` became (its waiter), as rkt's stop killed its ppid's
    tree: `rkt run` dies of SIGKILL, as with the container flavor (`rkt gc` cleans up)."""
    pid = hypervisor_pid(pod)
    if pid is None:
        log.debug("kvm: the pod's hypervisor is not running")
        return 0
    if not force and agent.stop_or_say(pod, 30.0, "killing the VM"):
        return 0
    waiter = contract.stage1_process(pod) if force else None
    for p in (waiter, pid):
        if p is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
    _wait_gone(pid, 5.0)
    return 0


def gc(pod: Path) -> int:
    """Release what the pod still holds: a stray hypervisor, its cgroups (what is still
    in them is killed), sockets, temp files. Its namespaces and mounts went with it."""
    pid = hypervisor_pid(pod)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)
    from pyrkt.linux import beneath
    from pyrkt.linux.cgroup import PodCgroups

    try:
        PodCgroups(pod.name).destroy()
    except OSError as e:
        log.warn(f"pod {pod.name}: cannot remove its cgroups: {e}")
    try:  # holds the control share: no symlink followed
        beneath.remove_tree(runner.kvm_dir(pod))
    except OSError as e:
        log.warn(f"cannot remove {runner.kvm_dir(pod)}: {e}")
    try:
        from pyrkt.net.api import teardown_pod_network
    except ImportError:
        return 0
    teardown_pod_network(pod)
    return 0
