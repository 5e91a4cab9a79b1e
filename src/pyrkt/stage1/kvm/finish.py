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


# The guest's word that the pod could not start (guest/script.py GUEST_FAILED), in the
# control share: hostile, so read bounded, without following links, and shown as
# printable ASCII only.
FAILED_REL = "failed"
FAILED_MAX_BYTES = 256


def guest_failure(pod: Path) -> str | None:
    from pyrkt.linux import beneath

    try:
        raw = beneath.read_file(kvm_dir(pod) / "ctl", FAILED_REL, FAILED_MAX_BYTES)
    except OSError:
        return None
    text = raw.decode("ascii", "replace").strip()
    return "".join(c if " " <= c <= "~" else "?" for c in text) or None


def finish_pod(pod: Path, apps: list[str], rc: int) -> int:
    """After the hypervisor exited with rc: the first failing app's code (first_failure).

    The VM ending before every app left its code (QEMU killed by a signal: the OOM
    killer, `kill -9`, a crash; or failing; or the guest saying why the pod could not
    start: guest_failure) is rkt's own failure (254), and so is a
    status file the guest replaced by something that is not one (a symlink, a FIFO, a
    huge file...): one line naming what happened, also recorded in the pod folder
    (`contract.write_failure`) for `rkt status`.
    """
    (pod / agent_socket_rel()).unlink(missing_ok=True)
    found, refused = contract.read_exit_statuses(contract.stage1_rootfs(pod), apps)
    codes = {a: s.code for a, s in found.items()}
    missing = [a for a in apps if a not in codes and a not in refused]
    log.debug(f"kvm: hypervisor exited with {describe_status(rc)}; app exit codes {codes}")
    message = None
    if refused:
        message = "; ".join(f"app {a}: exit status refused ({why})" for a, why in refused.items())
    elif missing and rc != 0:
        message = (f"the VM stopped ({describe_status(rc)}) before app(s) "
                   f"{', '.join(missing)} finished")
    elif missing and (said := guest_failure(pod)) is not None:
        message = f"the pod could not start: {said} (the guest said)"
    if message is not None:
        try:
            contract.write_failure(pod, message)
        except OSError as e:
            log.warn(f"cannot record the pod's failure: {e}")
        raise RktError(message, f"serial console log: {serial_log(pod)}")
    return first_failure(found, apps)


def first_failure(found: dict[str, contract.ExitStatus], apps: list[str]) -> int:
    """The code of the app that failed first (its status file written first: the guest
    stops the other apps only after it wrote it), pod order between equals; 0 if none."""
    failed = [(s.mtime, apps.index(a), s.code) for a, s in found.items() if s.code != 0]
    return min(failed)[2] if failed else 0
