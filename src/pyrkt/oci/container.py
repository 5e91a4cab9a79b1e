"""create / start / kill / delete, and the container process.

`create` plans the container (refusing what a VM cannot honour), prepares the pod
folder and forks the *container process*: the pid it reports (`--pid-file`,
`state.pid`). That process lives in a mount namespace of its own where the bundle's
rootfs is bound into the pod folder (the mount vanishes with it, whatever kills it),
joins the bundle's network namespace, and waits on `exec.fifo`. `start` reads the fifo;
the process then boots the VM (`stage1.kvm.runner.run_pod`) and becomes the kvm
stage1's waiter (same pid, QEMU its child), which exits with the app's exit code (128+N
when signal N ended it in the guest). Its caller (containerd's shim, conmon) is its
subreaper once `create` exited, and so collects that status.

`kill`: SIGKILL ends the container process and QEMU on the host; any other signal goes
to the app inside the guest through the agent. `delete` removes what is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pyrkt.errors import RktError
from pyrkt.oci.runlog import RuntimeLog
from pyrkt.oci.state import (
    APP,
    FIFO,
    State,
    Status,
    Store,
    now_rfc3339,
    proc_start,
    write_pid_file,
)
from pyrkt.record import record, replace
from pyrkt.stage1 import contract

# start, kill, delete import nothing more: the shim runs them once per container each
if TYPE_CHECKING:
    from pyrkt.net.tap import IfaceState
    from pyrkt.oci.plan import ContainerPlan

START_TIMEOUT_S = 30.0
KILL_WAIT_S = 10.0


@record
class CreateArgs:
    cid: str
    bundle: Path
    pid_file: Path | None = None
    console_socket: str | None = None


def _prepare_pod(pod: Path, cp: ContainerPlan) -> None:
    """The pod folder the kvm runner expects. The guest kernel, initramfs, rkt-wait and
    the jail launcher go to a stage1 tree of the container's own beside it
    (`ROOT/ID/stage1-image`, recorded in POD/stage1-tree as stage0 records a rendered
    stage1 image): the host runs them from there, never from POD/stage1/rootfs, which
    the guest can write (its 9p share). That share holds the app's rootfs mount point
    and rkt/status; the folders of tmpfs mounts are made too."""
    from pyrkt.stage1.build import kernel
    from pyrkt.stage1.kvm import assets

    guest = kernel.cached_tailored_kernel() or kernel.distro_kernel()
    image = pod.parent / "stage1-image"
    assets.populate_stage1_rootfs(image / "rootfs", kernel=guest.image)
    pod.mkdir(exist_ok=True)
    contract.stage1_tree_record(pod).write_text(f"{image}\n")
    contract.app_rootfs(pod, APP).mkdir(parents=True)
    contract.status_dir(pod).mkdir(parents=True)
    for d in cp.empty_dirs:
        d.mkdir(parents=True, mode=0o755)


def _stage_files(cp: ContainerPlan) -> list[str]:
    """The single files bound into the container, staged in its pod folder; the notes."""
    if not cp.file_binds:
        return []
    from pyrkt.oci import filebind

    return [n for n in map(filebind.stage, cp.file_binds) if n is not None]


def create(store: Store, a: CreateArgs, rlog: RuntimeLog) -> None:
    from pyrkt.oci import netattach
    from pyrkt.oci.plan import container_plan
    from pyrkt.oci.spec import load_bundle

    bundle = a.bundle.resolve()
    spec = load_bundle(bundle)
    d = store.make(a.cid)
    pid = 0
    taps: list[tuple[str, str]] = []
    cp: ContainerPlan | None = None
    try:
        with store.locked(a.cid):
            cp = container_plan(spec, a.cid, d / "pod")
            if cp.terminal and not a.console_socket:
                raise RktError("process.terminal is set but no --console-socket was given",
                               "a terminal container's pty master goes to the console socket")
            for note in cp.notes:
                rlog.warn(note)
            st = State(id=a.cid, bundle=str(bundle), rootfs=str(spec.root_path),
                       created=now_rfc3339(), sandbox=cp.sandbox,
                       annotations=dict(spec.annotations),
                       netns=str(cp.netns or "") if not cp.sandbox else "")
            store.save(st)
            states: list[IfaceState] = []
            if not cp.sandbox:
                _prepare_pod(d / "pod", cp)
                for note in _stage_files(cp):
                    rlog.warn(note)
                if cp.netns is not None:
                    taps, states = netattach.attach(cp.netns)
                    st = replace(st, taps=tuple(taps))
                    store.save(st)
            os.mkfifo(d / FIFO, 0o600)
            slave = None
            if cp.terminal and a.console_socket:
                from pyrkt.oci import console

                slave = console.send_master(a.console_socket)
            pid = _fork_container(store, st, cp, spec.root_path, states, slave, rlog)
            info = proc_start(pid)
            st = replace(st, pid=pid, pid_start=info[0] if info else 0)
            store.save(st)
            if a.pid_file is not None:
                write_pid_file(a.pid_file, pid)
    except BaseException:
        if pid:
            _kill_and_reap(pid)
        if cp is not None and cp.netns is not None:
            netattach.detach(cp.netns, taps)
        remove_tree(d)
        raise


def _fork_container(store: Store, st: State, cp: ContainerPlan, root: Path,
                    states: list[IfaceState], slave: int | None, rlog: RuntimeLog) -> int:
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _container_process(store, st, cp, root, states, slave, w, rlog)
    os.close(w)
    if slave is not None:
        os.close(slave)
    with os.fdopen(r, "rb") as f:
        msg = f.read(4096).decode(errors="replace")
    if msg != "ok":
        _kill_and_reap(pid)
        raise RktError(msg or "the container process died while setting up")
    return pid


def _close_fds(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _container_process(store: Store, st: State, cp: ContainerPlan, root: Path,
                       states: list[IfaceState], slave: int | None, w: int,
                       rlog: RuntimeLog) -> None:
    """The child of create; never returns."""
    try:
        _close_fds({w} | ({slave} if slave is not None else set()))
        os.setsid()  # not in the caller's process group or session
        sys.stderr = rlog.stream()  # fd 2 stays the container's stderr (for QEMU)
        if slave is not None:
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            os.close(slave)
        pod = store.pod(st.id)
        if cp.sandbox:
            _sandbox_namespaces(cp)
        else:
            from pyrkt.linux import mount, ns

            ns.unshare(ns.CLONE.NEWNS)
            mount.make_private("/", slave=True)
            mount.bind(str(root), str(contract.app_rootfs(pod, APP)), recursive=True)
        os.write(w, b"ok")
        os.close(w)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.write(w, f"container process: {e}".encode())
        os._exit(1)
    code = 254
    try:
        fd = os.open(store.dir(st.id) / FIFO, os.O_WRONLY | os.O_CLOEXEC)  # until `start`
        os.write(fd, b"0")
        os.close(fd)
        if cp.sandbox:
            code = _pause()
        else:
            _boot(pod, cp, states)  # becomes the waiter: returns only on failure
    except BaseException as e:
        rlog.child_failed(f"container {st.id}: {e}")
    finally:
        os._exit(code)


def _sandbox_namespaces(cp: ContainerPlan) -> None:
    """An infra container's process holds the pod's namespaces: the pod's other
    containers join them as /proc/PID/ns/{net,ipc,uts} (containerd's CRI does)."""
    from pyrkt.linux import ns

    if cp.netns is not None:
        ns.setns_path(str(cp.netns), ns.CLONE.NEWNET)
    flags = {"network": ns.CLONE.NEWNET, "ipc": ns.CLONE.NEWIPC, "uts": ns.CLONE.NEWUTS}
    new = 0
    for kind in cp.new_namespaces:
        if kind in flags and not (kind == "network" and cp.netns is not None):
            new |= flags[kind]
    if new:
        ns.unshare(new)
    if new & ns.CLONE.NEWUTS:
        ns.sethostname(cp.pod.hostname)


def _pause() -> int:
    """An infra container's process: waits for SIGTERM/SIGINT (exit 0), as `pause`."""
    done: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        done.append(signum)

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, stop)
    while not done:
        signal.pause()
    return 0


def _boot(pod: Path, cp: ContainerPlan, states: list[IfaceState]) -> None:
    from pyrkt.net.tap import guest_network_script
    from pyrkt.oci import netattach
    from pyrkt.stage1.kvm import runner
    from pyrkt.stage1.kvm.vm import ConsoleMode, Tap

    ifaces = states
    opts = runner.RunOptions(
        taps=tuple(Tap(f"{netattach.TAP_PREFIX}{i}", s.mac) for i, s in enumerate(ifaces)),
        guest_net_script=guest_network_script(ifaces) if ifaces else "",
        etc_files=cp.etc_files,
        netns=cp.netns,  # QEMU (in its jail) joins it and opens the taps there
        console=ConsoleMode.TERMINAL,
        exec_waiter=True,
        # Booted, not restored from a VM template (stage1/kvm/templates/): the runtime
        # keeps no store that a `gc` would clear, so templates' RAM files would stay.
        template=False,
    )
    runner.run_pod(pod, cp.pod, opts)


# ---- start ------------------------------------------------------------------------


def start(store: Store, cid: str) -> None:
    with store.locked(cid):
        st = store.load(cid)
        status = store.status(st)
        if status is Status.RUNNING:
            raise RktError("cannot start an already running container")
        if status is Status.STOPPED:
            raise RktError("cannot start a container that has stopped")
        if status is not Status.CREATED:
            raise RktError(f"cannot start a container in the {status} state")
        fifo = store.dir(cid) / FIFO
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            import select

            while True:
                ready, _, _ = select.select([fd], [], [], 0.2)
                if ready and os.read(fd, 1):
                    break
                if store.status(st) is Status.STOPPED:
                    raise RktError("the container process exited before it was started")
                if time.monotonic() > deadline:
                    raise RktError("the container process did not take the start signal")
        finally:
            os.close(fd)
        fifo.unlink()
        store.save(replace(st, started=True))


def wait_and_delete(store: Store, cid: str) -> int:
    """`run` without --detach: wait for our child, the container process; delete; its
    exit status (128+N for signal N)."""
    st = store.load(cid)
    _, status = os.waitpid(st.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    delete(store, cid, force=True)
    return code if code >= 0 else 128 - code


# ---- kill -------------------------------------------------------------------------


def parse_signal(text: str) -> int:
    t = text.strip().upper()
    if t.isdigit():
        n = int(t)
        if 0 < n < signal.NSIG:
            return n
    else:
        name = t if t.startswith("SIG") else f"SIG{t}"
        sig = getattr(signal.Signals, name, None) if name.isidentifier() else None
        if isinstance(sig, signal.Signals):
            return int(sig)
    raise RktError(f'unknown signal "{text}"')


def hypervisor_of(store: Store, st: State) -> int | None:
    """The QEMU of a container: the pid in its pod folder if that process is a QEMU
    (the kvm stage1's check, without importing the kvm runner)."""
    try:
        pid = int(contract.pid_file(store.pod(st.id)).read_text(errors="replace")[:32])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            exe = f.read(4096).split(b"\0", 1)[0]
    except (OSError, ValueError):
        return None
    return pid if b"qemu" in exe else None


def _kill_and_reap(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _wait_gone(pid: int, start: int, timeout: float) -> None:
    from pyrkt.oci.state import alive

    deadline = time.monotonic() + timeout
    while alive(pid, start) and time.monotonic() < deadline:
        time.sleep(0.02)


def hard_kill(store: Store, st: State) -> None:
    """SIGKILL: the container process first (its status is then 137), then its QEMU."""
    qemu = hypervisor_of(store, st)
    with contextlib.suppress(ProcessLookupError):
        os.kill(st.pid, signal.SIGKILL)
    if qemu is not None:
        info = proc_start(qemu)
        with contextlib.suppress(ProcessLookupError):
            os.kill(qemu, signal.SIGKILL)
        _wait_gone(qemu, info[0] if info else 0, KILL_WAIT_S)
    _wait_gone(st.pid, st.pid_start, KILL_WAIT_S)


def kill(store: Store, cid: str, sig: int, all_procs: bool = False) -> None:
    st = store.load(cid)
    status = store.status(st)
    if status not in (Status.CREATED, Status.RUNNING):
        raise RktError("container not running")
    if sig == signal.SIGKILL:
        hard_kill(store, st)
        return
    if status is Status.CREATED or st.sandbox:
        os.kill(st.pid, sig)  # not booted: the container process itself
        return
    from pyrkt.stage1.kvm import agent

    pod = store.pod(cid)
    agent.wait_started(pod)
    agent.signal_apps(pod, sig, "all" if all_procs else "")


# ---- delete -----------------------------------------------------------------------


def _remove_cgroups(store: Store, cid: str) -> None:
    """The VM's cgroups (the kvm stage1's jail makes them; its waiter removes them, unless
    it was killed): what is still in them is killed."""
    from pyrkt.linux.cgroup import PodCgroups
    from pyrkt.oci.state import pod_uuid

    try:
        PodCgroups(pod_uuid(store.pod(cid))).destroy()
    except OSError as e:
        raise RktError(f"cannot remove the container's cgroups: {e}") from e


def remove_tree(d: Path) -> None:
    """rm -r d through folder fds (the pod folder holds the guest's shares: no symlink
    is followed), never crossing into another file system (a bind mount left in this
    mount namespace: the bundle's rootfs must survive whatever happens)."""
    from pyrkt.linux import beneath, mount

    # beneath stops at another st_dev only: a bind mount from the same file system
    # would be walked into (and emptied), so any mount under d is refused first
    inside = mount.submounts(str(d.absolute()))
    if inside:
        raise RktError(f"cannot remove {d}: {inside[0]} is mounted under it",
                       "unmount it, then delete again")
    try:
        beneath.remove_tree(d)
    except OSError as e:
        raise RktError(f"cannot remove {d}: {e}", "is something mounted under it?") from e


def delete(store: Store, cid: str, force: bool) -> None:
    try:
        st = store.load(cid)
    except RktError:
        if not store.dir(cid).is_dir():
            if force:
                return
            raise
        st = None  # a create that died midway: only the folder is left
    if st is not None:
        status = store.status(st)
        if status is Status.RUNNING and not force:
            raise RktError(f"cannot delete container {cid} that is not stopped: running")
        if status in (Status.CREATED, Status.RUNNING):
            hard_kill(store, st)
        qemu = hypervisor_of(store, st)  # a QEMU left by a kill -9 of its waiter
        if qemu is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(qemu, signal.SIGKILL)
            info = proc_start(qemu)
            _wait_gone(qemu, info[0] if info else 0, KILL_WAIT_S)
        if st.netns and st.taps:
            from pyrkt.oci import netattach

            netattach.detach(Path(st.netns), st.taps)
        if not st.sandbox:
            _remove_cgroups(store, cid)
    remove_tree(store.dir(cid))
