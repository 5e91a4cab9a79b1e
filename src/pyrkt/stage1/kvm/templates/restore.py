"""A pod's VM restored from its template: the kvm runner's entry (`restore_pod`).

The pod's QEMU starts with the template's devices and the pod's backends, its RAM
mapped privately from the template's RAM file, `-incoming defer`, and two connected
sockets: QMP and the rkt.go port. Over QMP: the `x-ignore-shared` capability,
`migrate-incoming fd:N` on the template's state file (an fd it inherited), `cont`, and
the pod's disks that are not in the template's disk slots (shape.slotted: more than it
has, or too big) hot-plugged (`blockdev-add` + `device_add`).
Then the guest gets "go" on the rkt.go port (clock, RNG seed, MACs, the disks to mount:
shape.go_line) and answers "ok" once it took them; from there on the pod is like a
booted one (but for its disks, mounted in the background meanwhile). Any failure
kills that QEMU and returns None: the runner boots the pod instead (said under
--debug), and a template that failed to restore is marked failed (store.mark_failed).
A QEMU stopped from outside meanwhile (killed, or SIGTERM) is returned as it is: the
pod ends, as one whose VM is killed while it boots. QEMU refusing the pod's disks does
not mark the template failed (the boot that follows says why).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from pyrkt import log
from pyrkt.errors import RktError
from pyrkt.record import record
from pyrkt.stage1 import contract
from pyrkt.stage1.kvm import digests, launch
from pyrkt.stage1.kvm.guest.script import DiskTarget
from pyrkt.stage1.kvm.hypervisors.base import Hypervisor
from pyrkt.stage1.kvm.qmp import Qmp, QmpError
from pyrkt.stage1.kvm.templates import build, shape, store
from pyrkt.stage1.kvm.vm import VmPlan

# Generous: under TCG on a loaded machine QEMU can take seconds to start.
QMP_TIMEOUT_S = 60.0
GO_TIMEOUT_S = 60.0
SEED_BYTES = 64
STOPPED_WAIT_S = 10.0  # _ended_from_outside


@record
class Request:
    pod: Path
    vm: VmPlan  # the pod's VM as it would boot
    hypervisor: Hypervisor
    qemu: Path  # the hypervisor's executable, as found on the PATH
    cache_dir: Path  # DIR/cache: the store is in it
    cmdline: tuple[str, ...]  # the template's kernel command line
    netns: Path | None
    interactive: bool
    confinement: launch.Confinement | None  # the pod's jail
    disks: tuple[DiskTarget, ...] = ()  # where the guest mounts each of the pod's disks


Started = tuple[subprocess.Popen[bytes], list[Path]]


def restore_pod(req: Request) -> Started | None:
    """The pod's QEMU, restored and running its guest, and the cgroups to remove once it
    is gone (launch.spawn); or None (booting is up to the caller: the reason is said
    under --debug)."""
    tplan = shape.template_plan(req.vm, req.cmdline)
    try:
        qemu_files = shape.qemu_files(req.hypervisor.binary(), req.qemu, req.pod)
        files: list[list[object]] = [
            [role, digests.sha256(path, req.cache_dir)] for role, path in
            (("kernel", req.vm.kernel), ("initrd", req.vm.initrd)) if path is not None]
        key = shape.key(req.hypervisor.argv(shape.keyed_plan(tplan)), files + qemu_files)
        # A disk's size is its image's: a pod's qcow2 layer has its backing file's.
        sizes = {d.id: d.base.stat().st_size for d in req.vm.disks}
    except OSError as e:
        log.debug(f"kvm: no VM template: cannot read the VM's files: {e}")
        return None
    recipe = build.Recipe(tplan, req.hypervisor, qemu_files)
    where = store.store_dir(req.cache_dir)
    try:
        with store.use(where, key, lambda final: build.make(final, recipe)) as t:
            return _restore(req, t, sizes)
    except store.Unavailable as e:
        log.debug(f"kvm: {e.args[0]}: booting the VM")
        return None


def _restore(req: Request, t: store.Template, sizes: dict[str, int]) -> Started | None:
    t0 = time.monotonic()
    pod = req.pod
    serial = pod / req.vm.serial_log if req.vm.serial_log else None
    if serial is not None:  # the pod's serial log starts with its template's boot
        shutil.copyfile(t.serial_log, serial)
    if req.vm.serial_to_stderr:  # --debug: that boot's messages, as a boot shows them
        _copy_to_stderr(t.serial_log)
    go_host, go_qemu = socket.socketpair()
    qmp_host, qmp_qemu = socket.socketpair()
    state = os.open(t.state, os.O_RDONLY | os.O_CLOEXEC)
    vp = shape.restore_plan(req.vm, req.cmdline, t.ram, t.kernel_head, go_qemu.fileno(),
                            qmp_qemu.fileno(), sizes)
    p = None
    groups: list[Path] = []
    started = False
    try:
        try:
            p, groups = launch.spawn(
                pod, vp, req.hypervisor.argv(vp), confinement=req.confinement,
                netns=req.netns, interactive=req.interactive,
                pass_fds=[*(fd for fd, _ in vp.fd_sets), go_qemu.fileno(), qmp_qemu.fileno(),
                          state],
                pidfile=contract.pid_file(pod))
        finally:
            go_qemu.close()
            qmp_qemu.close()
        q = Qmp(qmp_host, QMP_TIMEOUT_S)
        sent = _send_restore(q, state)
        q.greeting()
        q.reply(sent[0])
        started = True  # from here on a failure is the template's
        for i in sent[1:]:
            q.reply(i)
        build.wait_migration(q, QMP_TIMEOUT_S)
        q.execute("cont")
        if vp.disks:  # not in a slot: the guest's pod script waits for them by serial
            _attach(q, vp)
        macs = [(shape.template_mac(i), tap.mac) for i, tap in enumerate(vp.taps)]
        go_host.sendall(shape.go_line(time.time_ns(), secrets.token_bytes(SEED_BYTES), macs,
                                      req.disks))
        said = build.read_line(go_host, GO_TIMEOUT_S)
        if not said:
            raise VmEnded("the VM ended before it took its go")
        if said != b"ok":
            raise RestoreFailed(f"the guest answered {said[:80]!r} to go")
    except (OSError, RktError) as e:
        if p is not None and _ended_from_outside(p, e):
            log.debug(f"kvm: the VM was stopped while it was restored ({e})")
            return p, groups  # the pod's end, as for a VM killed while it boots
        if p is not None:
            _kill(p)
        launch.remove_groups(groups)
        if started and not isinstance(e, DisksRefused):
            store.mark_failed(t.folder.parent, t.key, f"a restore failed: {e}")
        if serial is not None:
            serial.unlink(missing_ok=True)
        log.debug(f"kvm: restoring VM template {t.key} failed ({e}): booting the VM")
        return None
    finally:
        os.close(state)
        go_host.close()
        qmp_host.close()
    log.debug(f"kvm: restored from template {t.key} in {(time.monotonic() - t0) * 1000:.0f} ms")
    return p, groups


def _send_restore(q: Qmp, state: int) -> list[int]:
    """The restore's first commands, sent at once as QEMU starts, before its greeting
    (it answers them as soon as its main loop runs: one round trip for all, none spent
    after QEMU is up): leave capabilities negotiation, keep the RAM out of the stream
    (it is the template's file), migration events on (no polling:
    `build.wait_migration`), load the state from the fd QEMU inherited. Their ids, to
    read the replies."""
    return [q.send("qmp_capabilities"),
            q.send("migrate-set-capabilities", {"capabilities": build.MIGRATION_CAPS}),
            q.send("migrate-incoming", {"uri": f"fd:{state}"})]


def _copy_to_stderr(path: Path) -> None:
    sys.stderr.flush()
    with contextlib.suppress(OSError), path.open("rb") as f:
        shutil.copyfileobj(f, sys.stderr.buffer)
    sys.stderr.flush()


class RestoreFailed(RktError):
    """The restored guest refused its go."""


class VmEnded(RestoreFailed):
    """QEMU ended before the guest took its go: a guest that failed (it powers off: QEMU
    exits 0) or a QEMU killed from outside (_ended_from_outside), the pod's end."""


class DisksRefused(RktError):
    """QEMU refused the pod's disks: the pod's matter (its files), not the template's,
    which stays usable; the boot that follows says what is wrong with them."""


def _attach(q: Qmp, vp: VmPlan) -> None:
    from pyrkt.stage1.kvm import disks

    try:
        disks.attach_qmp(q, vp.disks)
    except QmpError as e:
        raise DisksRefused(f"hot-plugging the pod's disks: {e}") from e


def _ended_from_outside(p: subprocess.Popen[bytes], e: Exception) -> bool:
    """Whether the restore failed because someone ended the pod's QEMU (`rkt stop
    --force`, kill -9, the OOM killer) before the guest took its go: the pod's end, not
    the template's fault (no boot follows, the template stays usable). QEMU exits 1 when
    it cannot load the state, 0 on SIGTERM; a guest that powered off before its go
    (VmEnded) also exits 0, so there only a death by signal counts."""
    if isinstance(e, RestoreFailed) and not isinstance(e, VmEnded):
        return False  # the guest answered: QEMU runs on
    try:  # its sockets close as it exits, before it can be waited for (the init of its
        # PID namespace is reaped once that namespace is torn down and its memory freed)
        rc = p.wait(STOPPED_WAIT_S)
    except subprocess.TimeoutExpired:
        return False
    return rc < 0 if isinstance(e, VmEnded) else rc <= 0


def _kill(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.kill()
    p.wait()
