"""After the hypervisor exited: the pod's exit code from what the guest wrote.

Kept light (pathlib, contract, errors, log): the waiter imports it after every VM pod,
where importing the runner (and its planning modules) would cost ~0.1 s under load.
"""

from __future__ import annotations

from pathlib import Path

from pyrkt import log
from pyrkt.errors import RktError, describe_status
from pyrkt.stage1 import contract


def kvm_dir(pod: Path) -> Path:
    """Host-side runtime files of the VM (sockets, serial log)."""
    return pod / "kvm"


def serial_log(pod: Path) -> Path:
    return kvm_dir(pod) / "serial.log"


def agent_socket_rel() -> Path:
    """Relative to the pod folder (QEMU's cwd): keeps under the unix socket path limit."""
    return Path("kvm") / "agent.sock"


def finish_pod(pod: Path, apps: list[str], rc: int) -> int:
    """After the hypervisor exited with rc: the first failing app's code (in pod order)."""
    (pod / agent_socket_rel()).unlink(missing_ok=True)
    codes = contract.read_exit_codes(pod)
    missing = [a for a in apps if a not in codes]
    log.debug(f"kvm: hypervisor exited with {describe_status(rc)}; app exit codes {codes}")
    if missing and rc < 0:
        # Killed by signal -rc (`rkt stop --force`, the OCI runtime's `kill -9`, anyone)
        # before these apps finished: they ended with it, as a process it killed would.
        log.debug(f"kvm: app(s) {', '.join(missing)} ended with the VM")
        return 128 - rc
    if missing and rc > 0:
        raise RktError(
            f"the VM stopped ({describe_status(rc)}) before app(s) {', '.join(missing)} "
            "finished",
            f"serial console log: {serial_log(pod)}",
        )
    for a in apps:
        c = codes.get(a, 0)
        if c != 0:
            return c
    return 0
