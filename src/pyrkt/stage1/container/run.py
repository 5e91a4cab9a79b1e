"""The `run` entrypoint of the container flavor: namespaces, cgroups, pod init, clean-up.

The process stage0 execs (it holds the pod lock) unshares the pod's mount, UTS, IPC,
PID and (unless --net=host) network namespaces, forks the pod init (PID 1 of the new
PID namespace, killed if this process dies), writes its pid to POD/pid, waits for it and
removes the pod's cgroups. Mounts live in the pod's mount namespace and vanish with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from pyrkt import log
from pyrkt.errors import RktError
from pyrkt.linux import mount, ns
from pyrkt.linux.cgroup import Limits, PodCgroups
from pyrkt.record import record, replace
from pyrkt.stage1 import contract
from pyrkt.stage1.container import etcfiles
from pyrkt.stage1.container.args import RunArgs, plan_for
from pyrkt.stage1.container.init import FORWARDED, InitConfig, exit_code, run_init
from pyrkt.stage1.plan import PodPlan

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False

if TYPE_CHECKING:
    from pyrkt.net.dns import CniDns

SPECIAL_NETS = ("host", "none")


@record
class RunOptions:
    """How to execute a plan. netns: a network namespace (file) to join, as made by NET
    for CNI networks; None with plan.net != "host" means a fresh one with only `lo`."""

    netns: Path | None = None
    protect_paths: bool = True
    restrict_caps: bool = True
    seccomp: bool = True  # the default syscall filter (--insecure-options=seccomp: off)
    cni_dns: tuple[CniDns, ...] | None = None  # None: no CNI network


def write_pid(pod: Path, pid: int, f: Path | None = None) -> None:
    f = f or contract.pid_file(pod)
    tmp = f.with_name(f".{f.name}.tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(f)


def _limits(plan: PodPlan) -> dict[str, Limits]:
    return {
        a.name: Limits(memory=a.memory_limit, cpu_milli=a.cpu_limit_milli,
                       cpu_shares=a.cpu_shares)
        for a in plan.apps
    }


def _enter_namespaces(plan: PodPlan, opts: RunOptions) -> None:
    flags = ns.CLONE.NEWNS | ns.CLONE.NEWPID | ns.CLONE.NEWUTS | ns.CLONE.NEWIPC
    new_net = plan.net != "host" and opts.netns is None
    if opts.netns is not None:
        ns.setns_path(str(opts.netns), ns.CLONE.NEWNET)
    elif new_net:
        flags |= ns.CLONE.NEWNET
    ns.unshare(flags)
    mount.make_private("/", slave=True)
    ns.sethostname(plan.hostname)
    if new_net:
        from pyrkt.linux import netif

        netif.set_up("lo")


def execute(plan: PodPlan, pod: Path, opts: RunOptions = RunOptions()) -> int:
    """Run every app of the plan in one pod; the first failing app's exit code."""
    pod = pod.resolve()
    if not plan.apps:
        raise RktError("the pod has no apps")
    cg = PodCgroups(plan.uuid)
    try:
        for name, lim in _limits(plan).items():
            cg.create(name, lim)
        etc = etcfiles.write_pod_etc(contract.stage1_rootfs(pod) / "rkt" / "etc",
                                     plan.hostname, plan.dns, opts.cni_dns)
        console = os.ttyname(0) if plan.interactive and os.isatty(0) else None
        program = None
        own: tuple[tuple[str, bytes | None], ...] = ()
        if opts.seccomp:
            from pyrkt.linux import seccomp

            program = seccomp.default_program()
            own = tuple((a.name, seccomp.filter_program(a.seccomp)) for a in plan.apps
                        if a.seccomp is not None)
        hidden = None
        if opts.protect_paths:
            from pyrkt.stage1.container.rootfs import inaccessible_nodes

            hidden = inaccessible_nodes(contract.stage1_rootfs(pod) / "rkt" / "inaccessible")
        cfg = InitConfig(plan=plan, pod=pod, cgroups=cg, etc_files=etc, console_tty=console,
                         protect_paths=opts.protect_paths, restrict_caps=opts.restrict_caps,
                         seccomp=program, app_seccomp=own, inaccessible=hidden,
                         etc_fallback=etcfiles.fallback_files(plan.dns))
        _enter_namespaces(plan, opts)
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        init_pid = os.fork()
        if init_pid == 0:
            run_init(cfg, parent)
        write_pid(pod, init_pid)
        write_pid(pod, os.getpid(), contract.ppid_file(pod))
        log.debug(f"pod init is pid {init_pid}")

        def forward(sig: int, _frame: FrameType | None) -> None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init_pid, sig)

        interactive_ignored = (signal.SIGINT, signal.SIGQUIT) if plan.interactive else ()
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_IGN if sig in interactive_ignored else forward)
        _, status = os.waitpid(init_pid, 0)
        code = exit_code(status)
        if os.WIFSIGNALED(status):
            recorded = contract.read_exit_codes(pod, [a.name for a in plan.apps])
            failed = [recorded[a.name] for a in plan.apps if recorded.get(a.name, 0)]
            code = failed[0] if failed else code
        return code
    except OSError as e:
        raise RktError(f"stage1: {e}") from e
    finally:
        try:
            cg.destroy()
        except OSError as e:
            log.warn(f"cannot remove the pod's cgroups: {e}")


def config_dirs(args: RunArgs) -> list[Path]:
    return [Path("/usr/lib/rkt"), Path(args.local_config or "/etc/rkt")]


def main(args: RunArgs) -> int:
    pod = Path.cwd()
    plan = plan_for(args, pod)
    opts = RunOptions(protect_paths=not args.disable_paths,
                      restrict_caps=not args.disable_capabilities,
                      seccomp=not args.disable_seccomp)
    if plan.net in SPECIAL_NETS:
        return execute(plan, pod, opts)
    # CNI networks: pyrkt.net makes the namespace; torn down here and again by `gc`.
    from pyrkt.net.api import setup_pod_network, teardown_pod_network
    from pyrkt.net.netns import host_namespaces

    try:
        net = setup_pod_network(pod, plan.uuid, plan.net, config_dirs=config_dirs(args),
                                ports=plan.ports)
        opts = replace(opts, netns=net.netns, cni_dns=net.dns)
        # execute() joins the pod's namespaces in this process: come back to the host's
        # before teardown (else fork fails with ENOMEM and CNI DEL runs in the pod netns).
        with host_namespaces():
            return execute(plan, pod, opts)
    finally:
        teardown_pod_network(pod)
