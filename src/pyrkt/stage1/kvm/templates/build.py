"""Making a template: boot its VM, wait for the init's "ready", save it.

Run by the first pod of a shape, under the key's exclusive lock (store.use), in a
folder of its own that is renamed into place when complete. The template QEMU starts
the way every QEMU of the stage1 starts (the runner's `launch`), in that folder, its
output in qemu.log there (not on the user's terminal). Its RAM is a shared file
mapping, so its boot fills the RAM file; once the guest waits on the rkt.go port,
QMP stops it and migrates its state (`x-ignore-shared`: the RAM stays in the file) into
`state` through a file descriptor (`getfd` + `fd:`; no `exec:` migration, which a
QEMU confined with `-sandbox spawn=deny` could not run), then quits it. That QEMU runs
outside the pods' jail (launch.py says why).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from pyrkt import log
from pyrkt.errors import RktError
from pyrkt.record import record, replace
from pyrkt.stage1.kvm import launch
from pyrkt.stage1.kvm.hypervisors.base import Hypervisor
from pyrkt.stage1.kvm.qmp import Qmp, QmpError
from pyrkt.stage1.kvm.templates import shape, store
from pyrkt.stage1.kvm.vm import MemoryFile, VmPlan

# A template boots once; under TCG on a loaded machine that can take many seconds.
BOOT_TIMEOUT_S = 300.0
QMP_TIMEOUT_S = 60.0


@record
class Recipe:
    """What a template is made from: its plan (shape.template_plan, the real kernel and
    initramfs), the driver, and what the key recorded of QEMU (for gc)."""

    plan: VmPlan
    hypervisor: Hypervisor
    qemu_files: list[list[object]]


def make(final: Path, recipe: Recipe) -> None:
    """Make the template final (store/KEY); store.Unavailable on failure, with nothing
    left behind, also when `rkt run` is asked to stop meanwhile (RktError then)."""
    import secrets

    t0 = time.monotonic()
    key = final.name
    token = f"{key}-{secrets.token_hex(4)}"
    build = final.with_name(f"{store.BUILD_PREFIX}{token}")
    ram = store.ram_dir(final.parent) / f"{token}.ram"
    build.mkdir(mode=0o700)
    made = False
    try:
        with _stop_signals_raise():
            (build / shape.SHARE).mkdir(mode=0o500)
            head = shape.kernel_head(recipe.plan.kernel.read_bytes())
            (build / shape.KERNEL_HEAD).write_bytes(head)
            ram.with_suffix(".owner").write_text(f"{build}\n{final}\n")
            os.close(os.open(ram, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            _boot_and_save(build, ram, recipe)
        p = recipe.plan
        vm = (f"{p.vcpus} vCPU(s), {p.memory_mib} MiB, {p.accel}, {len(p.taps)} NIC(s), "
              f"{len(p.shares)} share(s)")
        store.write_meta(build, key, ram, vm, recipe.qemu_files)
        os.rename(build, final)
        made = True
    except (OSError, QmpError, store.Unavailable) as e:
        tail = _tail(build / "qemu.log")
        why = e.args[0] if isinstance(e, store.Unavailable) else str(e)
        raise store.Unavailable(f"cannot make template {key}: {why}"
                                + (f" (QEMU: {tail})" if tail else "")) from e
    finally:
        if not made:
            shutil.rmtree(build, ignore_errors=True)
            store.remove_ram(ram)
    log.debug(f"kvm: made VM template {key} ({vm}) in "
              f"{(time.monotonic() - t0) * 1000:.0f} ms")


class _Stopped(RktError):
    """`rkt run` got SIGTERM, SIGHUP or SIGINT while it made a template."""


@contextlib.contextmanager
def _stop_signals_raise() -> Iterator[None]:
    """A template takes seconds to make: a stop request meanwhile ends `rkt run` (its
    pod never ran) with the template's QEMU and files removed, not left to `rkt gc`."""
    def stop(signum: int, _frame: object) -> None:
        raise _Stopped(f"stopped by {signal.Signals(signum).name} while making a VM template")

    try:
        old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# Both sides of a template's migration: the RAM stays in the template's file, out of the
# stream; MIGRATION events say when it is done (wait_migration).
MIGRATION_CAPS = [{"capability": c, "state": True} for c in ("x-ignore-shared", "events")]

def _boot_and_save(build: Path, ram: Path, recipe: Recipe) -> None:
    go_host, go_qemu = socket.socketpair()
    qmp_host, qmp_qemu = socket.socketpair()
    state = os.open(build / store.STATE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                    0o600)
    plan = replace(recipe.plan, memory_file=MemoryFile(ram, shared=True),
                   go_fd=go_qemu.fileno(), qmp_fd=qmp_qemu.fileno())
    p = None
    try:
        p, _ = launch.spawn(build, plan, recipe.hypervisor.argv(plan),
                            pass_fds=[go_qemu.fileno(), qmp_qemu.fileno()],
                            pidfile=build / "pid", output=build / "qemu.log",
                            die_with_us=True)
        go_qemu.close()
        qmp_qemu.close()
        q = Qmp(qmp_host, QMP_TIMEOUT_S)
        q.handshake()
        said = read_line(go_host, BOOT_TIMEOUT_S)
        if said != b"ready":
            raise store.Unavailable(f"the template's init said {said[:80]!r}, not ready")
        q.execute("stop")
        q.execute("migrate-set-capabilities", {"capabilities": MIGRATION_CAPS})
        q.execute("getfd", {"fdname": "state"}, fds=[state])
        q.execute("migrate", {"uri": "fd:state"})
        wait_migration(q, QMP_TIMEOUT_S)
        with contextlib.suppress(QmpError):  # it may close before it answers
            q.execute("quit")
        p.wait(QMP_TIMEOUT_S)
    except BaseException:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
        raise
    finally:
        os.close(state)
        for s in (go_host, go_qemu, qmp_host, qmp_qemu):
            s.close()


def wait_migration(q: Qmp, timeout: float) -> None:
    """Until the migration (out, or in: a restore) completed, as QEMU's MIGRATION events
    say (the `events` capability: no polling); QmpError when it failed (an incoming
    QEMU that cannot load the state exits: the connection closes) or timeout passed
    without an event."""
    while True:
        status = q.wait_event("MIGRATION", timeout).get("status")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise QmpError(f"migration {status}")


def read_line(sock: socket.socket, timeout: float, limit: int = 256) -> bytes:
    """One line from the guest's rkt.go port (without its newline), at most limit bytes,
    within timeout; b"" when the port closed (the QEMU ended)."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf and len(buf) <= limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no word from the guest within {timeout:.0f}s")
        sock.settimeout(left)
        try:
            chunk = sock.recv(limit + 1 - len(buf))
        except TimeoutError:
            continue
        if not chunk:
            return b""
        buf += chunk
    return buf.split(b"\n", 1)[0].strip()


def _tail(path: Path) -> str:
    """The last line QEMU wrote (its error), bounded."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln and "has no peer" not in ln]
    return lines[-1][:300] if lines else ""
