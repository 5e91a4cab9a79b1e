"""`run` for the kvm flavor: PodPlan -> pod script + VmPlan -> QEMU, wait, exit codes.

The runner stays the parent of the hypervisor (POD/pid is the hypervisor's pid), waits
for it, then reads the exit codes the guest wrote on the share and returns the first
failing app's code (in pod order).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import shlex
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path
from types import FrameType

from pyrkt import log
from pyrkt.errors import RktError
from pyrkt.linux import beneath
from pyrkt.record import record
from pyrkt.stage1 import contract
from pyrkt.stage1.kvm import accel, assets, hypervisors, launch
from pyrkt.stage1.kvm.disks import PodDisks
from pyrkt.stage1.kvm.fileshare import SAME_FS_HINT, link_file
from pyrkt.stage1.kvm.finish import FAILED_REL
from pyrkt.stage1.kvm.finish import agent_socket_rel as agent_socket_rel
from pyrkt.stage1.kvm.finish import finish_pod as finish_pod
from pyrkt.stage1.kvm.finish import kvm_dir as kvm_dir
from pyrkt.stage1.kvm.finish import serial_log as serial_log
from pyrkt.stage1.kvm.guest import script
from pyrkt.stage1.kvm.hypervisors.base import Hypervisor
from pyrkt.stage1.kvm.sizing import host_memory_mib, vm_size
from pyrkt.stage1.kvm.vm import (
    SHARE_CTL,
    SHARE_STAGE1,
    Accel,
    ConsoleMode,
    Machine,
    Share,
    Tap,
    VmPlan,
)
from pyrkt.stage1.plan import MountPlan, PodPlan

ENV_EXTRA_KERNEL_PARAMS = "RKT_HYPERVISOR_EXTRA_KERNEL_PARAMS"
# rkt-wait's fast path (rkt-wait.c); the old name, which a rkt-wait of an older stage1
# image reads, is never passed on.
ENV_WAIT_FAST = "RKT_WAIT_FAST_BENEATH"
ENV_WAIT_FAST_OLD = "RKT_WAIT_FAST"
# TCG's translation cache (MiB): a pod's boot fills ~36 MiB of QEMU's default, 16 MiB
# takes ~20 MiB off the idle pod's RSS at no measurable boot cost; 8 MiB thrashes (2.5x
# slower boot).
TCG_TB_MIB = 16


@record
class RunOptions:
    debug: bool = False
    accel: Accel | None = None  # None: probe (cached)
    hypervisor: str | None = None  # None: the stage1 image's hypervisor annotation
    machine: Machine = Machine.PC
    taps: tuple[Tap, ...] = ()
    netns: Path | None = None  # run the hypervisor inside this netns (NET)
    guest_net_script: str = ""  # sh run in the guest before the apps (NET)
    etc_files: tuple[tuple[str, str], ...] = ()  # (name, content) for each app's /etc
    rootfs: str | None = None  # --kvm-rootfs=block|9p (None: the pod annotation, default)
    protect_paths: bool = True  # /sys/firmware hidden (not with --insecure-options=paths)
    escape_key: bool = False  # a non-interactive pod on a terminal: Ctrl-a x leaves it
    template: bool | None = None  # --kvm-template=on|off (None: the annotation, env, default)
    # An interactive pod's console: INTERACTIVE (rkt run --interactive) or TERMINAL (the
    # OCI runtime: QEMU's stdio is a pty someone else holds; no escape, no monitor).
    console: ConsoleMode = ConsoleMode.INTERACTIVE
    # Become the lean waiter (waiter.py) once the hypervisor runs: the stage1 process
    # (`python -m pyrkt.stage1.kvm run`) does; an in-process caller (tests) waits itself.
    exec_waiter: bool = False


def guest_dir(pod: Path) -> Path:
    """The control folder shared with the guest as `rkt.ctl` (at /ctl): the pod script,
    /etc files, enter requests, app exec lines, the `started` flag. It lives in the pod
    folder itself, not in the stage1 rootfs, which stage0 mounts in a private mount
    namespace that `rkt enter` does not see."""
    return kvm_dir(pod) / "ctl"


def app_log_dir_rel() -> Path:
    """Where the apps' stdout.log and stderr.log are kept, relative to the pod folder:
    a copy of what they wrote, until `rkt gc`/`rkt rm` (rkt #2664)."""
    return Path("logs")


def tty_socket_rel() -> Path:
    """The rkt.tty port's socket (terminals for `rkt enter`), relative to the pod folder."""
    return Path("kvm") / "tty.sock"


def stage1_hypervisor(pod: Path) -> str:
    """The hypervisor the pod's stage1 image names (its `coreos.com/rkt/stage1/hypervisor`
    annotation in POD/stage1/manifest); qemu for an image that names none."""
    try:
        m = json.loads(contract.stage1_manifest(pod).read_text())
    except (OSError, ValueError):
        return hypervisors.HypervisorName.QEMU.value
    for a in m.get("annotations") or []:
        if isinstance(a, dict) and a.get("name") == contract.ANN_HYPERVISOR and a.get("value"):
            return str(a["value"])
    return hypervisors.HypervisorName.QEMU.value


INSTALL_HINT = {
    "qemu": "install qemu-system-x86",
    "lkvm": "install kvmtool, or run the pod with another stage1 image",
}


def cache_dir_for(pod: Path) -> Path:
    """DIR/cache for a pod at DIR/pods/<state>/<uuid>, else the user cache."""
    if pod.parent.parent.name == "pods":
        return pod.parent.parent.parent / "cache"
    return assets.cache_dir()


def host_cpus() -> int:
    return len(os.sched_getaffinity(0)) or os.cpu_count() or 1


def kernel_cmdline(debug: bool, interactive: bool, net: bool = False,
                   disks: bool = False) -> tuple[str, ...]:
    args = ["console=ttyS0", "panic=-1", "no_timer_check", "tsc=reliable", "noreplace-smp"]
    # PCI interrupts from the firmware's routing table: ACPI's interrupt links cost about
    # 0.15 s per virtio device under emulation. ACPI still enumerates the CPUs.
    args.append("acpi=noirq")
    if net:
        args.append("rkt.net=1")  # the guest loads its NIC drivers
    if disks:
        args.append("rkt.disks=1")  # the guest loads its disk drivers
    if not debug or interactive:
        args.append("quiet")
    args += shlex.split(os.environ.get(ENV_EXTRA_KERNEL_PARAMS, ""))
    return tuple(args)


def write_guest_files(pod: Path, plan: PodPlan, opts: RunOptions,
                      pod_disks: PodDisks | None = None) -> tuple[script.DiskTarget, ...]:
    """The pod script, each app's mount plan and exec line, the /etc files and seccomp
    programs in the control share, and the apps' mount points in their rootfs: all
    through `beneath` (the image is hostile; a pod only runs once, so the guest has not
    written these shares yet, but an image can hold any symlink). An app on a disk
    (pod_disks) has its mount points in its image's ext4 (fsimage.pod_paths), or
    rkt-exec makes them there; it needs no tmpfs on /run (FIFOs and sockets work on a
    disk). Returns where the guest mounts each disk (the pod script's, and a restore's
    go: templates/shape.go_line)."""
    pd = pod_disks or PodDisks()
    targets = tuple(script.disk_targets(plan, {a: d.id for a, d in pd.apps.items()},
                                        {v: d.id for v, d in pd.volumes.items()}))
    g = guest_dir(pod)
    g.mkdir(parents=True, exist_ok=True)
    with beneath.Root(g) as ctl, beneath.Root(contract.stage1_rootfs(pod)) as s1:
        for sub in ("apps", "enter", "mounts", "etc"):
            ctl.mkdir(sub, exist_ok=True)
        ctl.unlink("started")
        ctl.unlink(FAILED_REL)
        s1.mkdir(contract.STATUS_REL, parents=True, exist_ok=True)
        for f in s1.listdir(contract.STATUS_REL):
            s1.rmtree(f"{contract.STATUS_REL}/{f}")
        for name, content in opts.etc_files:
            ctl.write(f"etc/{name}", content)
        programs: dict[str, bytes] = {}
        if any(app.seccomp is not None for app in plan.apps):
            from pyrkt.linux import seccomp

            ctl.mkdir("seccomp", exist_ok=True)
            for app in plan.apps:
                program = seccomp.filter_program(app.seccomp) if app.seccomp else None
                if program is not None:
                    programs[app.name] = program
                    ctl.write(f"seccomp/{app.name}", program)
        names = [n for n, _ in opts.etc_files]
        text = script.pod_script(
            plan, net_script=opts.guest_net_script, seccomp_apps=tuple(programs),
            disks=targets,
            nofile=resource.getrlimit(resource.RLIMIT_NOFILE),
        )
        ctl.write("pod.sh", text)
        tags = script.mount_tags(plan, pd.volumes)
        console = "/dev/ttyS1" if plan.interactive else None
        fallback = _fallback_etc_names(plan)
        single = _link_file_volumes(pod, tags)
        for app in plan.apps:
            run = None
            app_names = names
            if app.name in pd.apps:  # on a disk: its image's ext4 has the mount points
                if fallback:  # the image's tree (its ext4's folder) says if it has it
                    with beneath.Root(pd.apps[app.name].base.parent / "rootfs") as image:
                        app_names = [n for n in names
                                     if n not in fallback or not _has_etc(image, n)]
            else:
                with s1.open_dir(f"opt/stage2/{app.name}/rootfs") as rootfs:
                    app_names = [n for n in names if n not in fallback or not _has_etc(rootfs, n)]
                    _prepare_mount_points(rootfs, app_names)
                    run = None if app.readonly_rootfs else _run_dir(rootfs)
            ctl.write(f"mounts/{app.name}", script.app_mounts(
                app, script.app_tags(tags, app), app_names, run, console,
                protect_paths=opts.protect_paths, single_files=single))
            # `enter` appends the command to this prefix (rkt-exec --ns ... --).
            ctl.write(f"apps/{app.name}", script.exec_line(app, argv=()) + "\n")
    return targets


def file_share_dir(pod: Path, tag: str) -> Path:
    """The folder shared as a single-file volume's tag: it holds the file, hard-linked
    (script.FILE_SHARE_NAME); 9p exports folders only."""
    return pod / "kvm-volumes" / tag


def _link_file_volumes(pod: Path, tags: dict[tuple[str, MountPlan], str]) -> set[MountPlan]:
    """The volumes whose source is a single file, each hard-linked into its shares'
    folders (the user's file itself: what the app writes lands in it, as with a bind)."""
    single = {m for _, m in tags if not m.source.is_dir()}
    for (_, m), tag in tags.items():
        if m not in single:
            continue
        try:
            link_file(m.source, file_share_dir(pod, tag) / script.FILE_SHARE_NAME)
        except OSError as e:
            raise RktError(
                f"volume {m.volume!r}: cannot share the file {m.source} with the VM: "
                f"{e.strerror}", SAME_FS_HINT.format(where="rkt's data folder"),
            ) from e
    return single


def _fallback_etc_names(plan: PodPlan) -> frozenset[str]:
    """The pod's /etc files an app gets only where its image has none (rkt's
    hosts-fallback: /etc/hosts without --hosts-entry)."""
    from pyrkt.net.dns import hosts_is_fallback

    return frozenset({"hosts"}) if hosts_is_fallback(plan.dns) else frozenset()


def _has_etc(rootfs: beneath.Root, name: str) -> bool:
    """Whether the image has /etc/<name> (whatever it is: a symlink counts)."""
    try:
        rootfs.lstat(f"etc/{name}")
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # /etc itself is a link: the image has its own arrangement
    return True


def _prepare_mount_points(rootfs: beneath.Root, etc_names: list[str]) -> None:
    """Make the app's /proc, /sys, /dev mount points and the missing target files of the
    pod's /etc files (in a plain /etc folder): each one made here is a 9p round trip
    less for rkt-exec in the guest, which makes what is missing itself, inside the app's
    root (symlinks included)."""
    for d in script.APP_MOUNT_POINTS:
        with contextlib.suppress(OSError):
            rootfs.mkdir(d, exist_ok=True)
    if not rootfs.is_dir("etc"):
        return
    for n in etc_names:
        with contextlib.suppress(OSError):  # there already (whatever it is)
            rootfs.write(f"etc/{n}", b"", 0o644, replace=False)


def _run_dir(rootfs: beneath.Root) -> script.RunDir | None:
    """The app's /run if it is a plain folder (a symlink is left alone: the image put its
    /run elsewhere), for the tmpfs the guest mounts over it."""
    try:
        st = rootfs.lstat("run")
        if not stat.S_ISDIR(st.st_mode):
            return None
        empty = next(rootfs.iterdir("run"), None) is None
    except OSError:
        return None
    return script.RunDir(st.st_mode, st.st_uid, st.st_gid, empty)


def _stdio_target(fd: int, fdset: int) -> tuple[Path, tuple[int, int] | None]:
    """Where QEMU writes what the guest sends for our fd (1 or 2).

    A write-only fd (file, pipe) is handed over as is (`-add-fd`), so QEMU shares our
    file offset; others (a terminal, O_RDWR) are reopened through /proc; a socket (which
    /proc cannot reopen) gets a pipe that a detached `cat` copies into it.
    """
    try:
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        is_socket = stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return Path("/dev/null"), None
    if is_socket:
        r, w = os.pipe2(os.O_CLOEXEC)
        try:  # `setsid -f`: cat is nobody's child here; it ends when QEMU closes the pipe
            subprocess.run(["setsid", "-f", "cat"], stdin=r, stdout=fd, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            os.close(w)
            raise RktError(f"cannot relay the app's output to socket fd {fd}: {e}") from e
        finally:
            os.close(r)
        return Path(f"/dev/fdset/{fdset}"), (w, fdset)
    if mode == os.O_WRONLY:
        return Path(f"/dev/fdset/{fdset}"), (os.dup(fd), fdset)
    return Path(f"/proc/self/fd/{fd}"), None


def vm_plan(pod: Path, plan: PodPlan, opts: RunOptions,
            pod_disks: PodDisks | None = None, sandbox: bool = False,
            ) -> tuple[VmPlan, str]:
    """The VM for this pod, and the accelerator decision's reason."""
    # From the stage1 image's own tree, not the pod's writable copy of it (the guest's).
    kernel, initrd = assets.asset_paths(contract.stage1_image_rootfs(pod))
    size = vm_size(plan.apps, host_cpus(), plan.annotations, host_memory_mib())
    if size.overridden:
        log.debug(f"kvm: VM size set by pod annotation(s) {', '.join(size.overridden)}")
    decision = accel.decide(kernel, initrd, cache_dir_for(pod), opts.accel)
    shares = [Share(SHARE_STAGE1, contract.stage1_rootfs(pod)), Share(SHARE_CTL, guest_dir(pod))]
    pd = pod_disks or PodDisks()
    disks = pd.all()
    for (_, m), tag in script.mount_tags(plan, pd.volumes).items():
        source = m.source if m.source.is_dir() else file_share_dir(pod, tag)
        shares.append(Share(tag, source, read_only=m.read_only, recursive=m.recursive))
    interactive = plan.interactive
    fd_sets: list[tuple[int, int]] = []
    out = err = None
    if not interactive:
        out, fs_out = _stdio_target(1, 1)
        err, fs_err = _stdio_target(2, 2)
        fd_sets = [f for f in (fs_out, fs_err) if f is not None]
    vp = VmPlan(
        kernel=kernel,
        initrd=initrd,
        cmdline=kernel_cmdline(opts.debug, interactive, net=bool(opts.taps),
                               disks=bool(disks)),
        vcpus=size.vcpus,
        memory_mib=size.memory_mib,
        accel=decision.accel,
        machine=opts.machine,
        shares=tuple(shares),
        disks=disks,
        taps=opts.taps,
        console=opts.console if interactive else ConsoleMode.STREAMS,
        escape_key=opts.escape_key and not interactive,
        serial_log=Path("kvm") / "serial.log",
        serial_to_stderr=opts.debug and not interactive,
        app_stdout=out,
        app_stderr=err,
        app_log_dir=None if interactive else app_log_dir_rel(),
        fd_sets=tuple(fd_sets),
        agent_socket=agent_socket_rel(),
        tty_socket=tty_socket_rel(),
        tcg_tb_mib=TCG_TB_MIB,
        balloon=True,
        sandbox=sandbox,
    )
    return vp, decision.reason


def run_pod(pod: Path, plan: PodPlan, opts: RunOptions) -> int:
    """Boot the pod's VM (or restore it from a template), run its apps, return the first
    failing app's exit code."""
    pod = pod.resolve()
    name = opts.hypervisor or stage1_hypervisor(pod)
    hv = hypervisors.get(name)
    found = shutil.which(hv.binary())
    if found is None:
        # Before the accelerator probe (which boots QEMU): name the missing hypervisor.
        raise RktError(
            f"hypervisor {name}: {hv.binary()} not found on the PATH",
            INSTALL_HINT.get(name),
        )
    jailed = launch.jail_enabled(name)
    kvm_dir(pod).mkdir(exist_ok=True)
    serial_log(pod).unlink(missing_ok=True)
    (pod / app_log_dir_rel()).mkdir(exist_ok=True)
    on_disks = _disks(pod, plan, opts, name)
    targets = write_guest_files(pod, plan, opts, on_disks)
    vp, reason = vm_plan(pod, plan, opts, on_disks, sandbox=jailed)
    if vp.accel is Accel.TCG and not reason.startswith("forced"):
        log.info("kvm: KVM is not usable here, using TCG (software emulation; --debug says why)")
    log.debug(f"kvm: accelerator {vp.accel}: {reason}")
    log.debug(f"kvm: VM size {vp.vcpus} vCPU(s), {vp.memory_mib} MiB")
    if not jailed and any(not s.recursive for s in vp.shares):
        log.warn("kvm: recursive=false volumes show what is mounted below their source: "
                 "only the VM jail (off here) binds them without it")
    confinement = launch.Confinement(pod, plan.uuid, Path(os.path.abspath(found)),
                                     cache_dir_for(pod)) if jailed else None
    fds = [fd for fd, _ in vp.fd_sets]
    try:
        started = _restored(pod, plan, opts, vp, name, hv, confinement, Path(found),
                            targets)
        if started is None:
            started = launch.spawn(
                pod, vp, hv.argv(vp), confinement=confinement, netns=opts.netns,
                interactive=plan.interactive, pass_fds=fds, pidfile=contract.pid_file(pod),
                install_hint=INSTALL_HINT.get(name))
    finally:
        for fd in fds:
            os.close(fd)
    p, groups = started
    # The process `rkt run` became (the waiter keeps this pid): `stop --force` kills it.
    contract.ppid_file(pod).write_text(f"{os.getpid()}\n")
    if opts.exec_waiter:
        _exec_waiter(pod, plan, p.pid, opts, groups)

    asked: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        """First SIGTERM/SIGHUP: stop the apps gracefully (as `rkt stop`); then: kill."""
        if not asked and plan.apps:
            asked.append(signum)
            from pyrkt.stage1.kvm import agent

            if agent.stop_or_say(pod, 10.0, "stopping the VM"):
                return
        p.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # QEMU gets it too
    try:
        rc = p.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        signal.signal(signal.SIGINT, old_int)
        launch.remove_groups(groups)
    return finish_pod(pod, [a.name for a in plan.apps], rc)


def _disks(pod: Path, plan: PodPlan, opts: RunOptions, hypervisor: str) -> PodDisks:
    """The pod's disks when its rootfs kind is block (disks.py), else none."""
    from pyrkt.stage1.kvm import disks

    kind = disks.rootfs_kind(plan.annotations, opts.rootfs)
    if kind is None:
        kind = disks.default_kind(pod, plan, hypervisor)
    log.debug(f"kvm: the apps' rootfs: {kind}")
    if kind is not disks.RootfsKind.BLOCK:
        return PodDisks()
    if hypervisor != hypervisors.HypervisorName.QEMU:
        raise RktError(f"rootfs={kind}: not supported with the {hypervisor} hypervisor",
                       f"use --{disks.FLAG_ROOTFS}=9p, or a qemu stage1")  # fmt: skip
    return disks.pod_disks(pod, plan, cache_dir_for(pod) / disks.CACHE_DIR)


def template_cmdline(vp: VmPlan) -> tuple[str, ...]:
    """The kernel command line a template boots with: one for every pod of its shape
    (--debug or not, interactive or not), `rkt.template=1` for the guest init. Its
    serial log, which `rkt run --debug` of a pod restored from it shows where a boot
    shows the kernel's messages, keeps the kernel's notices and warnings (its version,
    its command line: `loglevel=6`, ~1 KB) rather than all of them (`quiet` keeps none;
    without either, 14 KB through the emulated serial port: +0.4 s for the first pod of
    a shape under TCG). It loads the disk drivers (`rkt.disks=1`) whether the pod has
    disks or not: a template's disk slots are empty, a pod's disks go behind them at the
    restore (templates/shape.py), so one template serves pods on 9p and on disks (the
    tailored kernel has the drivers built in: nothing to load)."""
    args = kernel_cmdline(False, False, net=bool(vp.taps), disks=True)
    return (*("loglevel=6" if a == "quiet" else a for a in args), "rkt.template=1")


def _restored(pod: Path, plan: PodPlan, opts: RunOptions, vp: VmPlan, name: str,
              hv: Hypervisor, confinement: launch.Confinement | None, found: Path,
              disks: tuple[script.DiskTarget, ...],
              ) -> tuple[subprocess.Popen[bytes], list[Path]] | None:
    """The pod's VM restored from a template (made first if there is none), with the
    cgroups to remove after it; or None (said why under --debug) for a boot."""
    from pyrkt.stage1.kvm import templates

    why = templates.refused(name, plan.annotations, opts.template) or templates.skew(
        contract.stage1_image_rootfs(pod))  # the image whose initramfs the VM boots
    if why:
        log.debug(f"kvm: no VM template: {why}")
        return None
    from pyrkt.stage1.kvm.templates import restore

    return restore.restore_pod(restore.Request(
        pod=pod, vm=vp, hypervisor=hv, qemu=found, cache_dir=cache_dir_for(pod),
        cmdline=template_cmdline(vp), netns=opts.netns, interactive=plan.interactive,
        confinement=confinement, disks=disks,
    ))


def _exec_waiter(pod: Path, plan: PodPlan, pid: int, opts: RunOptions,
                 groups: list[Path]) -> None:
    """Replace this process (same pid: the hypervisor stays our child) with the waiter:
    the stage1's static rkt-wait (~0.3 MiB) when it has one, else waiter.py (a Python
    that holds ~10 MiB instead of the planner's ~25 MiB while the VM runs)."""
    spec = json.dumps({
        "pid": pid,
        "pod": str(pod),
        "apps": [a.name for a in plan.apps],
        "net": opts.netns is not None,
        "debug": opts.debug,
        "cgroups": [str(d) for d in groups],
    })
    # Blocked until the waiter takes them (the mask survives exec). SIGINT (Ctrl-C on
    # our terminal; QEMU, in a session of its own, does not get it) stops the pod too,
    # the apps getting SIGINT, as the container flavor's; it stays ignored for an
    # interactive pod (Ctrl-C is the guest's there) or when we were started with it
    # ignored (a background job of a shell).
    stopping = {signal.SIGTERM, signal.SIGHUP}
    if plan.interactive or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        stopping.add(signal.SIGINT)
    signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
    sys.stdout.flush()
    sys.stderr.flush()
    py = [sys.executable, "-I", "-S", str(Path(__file__).with_name("waiter.py"))]
    wait_bin = assets.waiter_path(contract.stage1_image_rootfs(pod))
    argv = [*py, spec] if wait_bin is None else [str(wait_bin), str(pid), py[0], py[3], spec]
    env = dict(os.environ)
    env.pop(ENV_WAIT_FAST_OLD, None)
    if groups:  # rkt-wait removes them once the hypervisor is gone
        env["RKT_WAIT_RMDIR"] = "\n".join(str(d) for d in groups)
    if wait_bin is not None and opts.netns is None and not opts.debug:
        # rkt-wait's fast path: the exit codes read without starting Python after QEMU,
        # each as rkt/status/APP beneath the stage1 rootfs (no symlink, a regular file
        # of a few bytes). A rkt-wait from an older image knows only the old variable,
        # which named the status folder by path: it is no longer set.
        fast = [str(pod / agent_socket_rel()), str(contract.stage1_rootfs(pod))]
        env[ENV_WAIT_FAST] = "\n".join(fast + [a.name for a in plan.apps])
    log.debug("kvm: runner becomes " + shlex.join(argv[:-1]))
    os.execve(argv[0], argv, env)
