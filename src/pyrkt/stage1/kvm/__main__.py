"""`python -m pyrkt.stage1.kvm run|enter|stop|gc ...`: the kvm flavor's entrypoints.

Arguments follow rkt's stage1 contract (parsed by the shared `stage1.container.args`);
our extension `--kvm-accel=kvm|tcg` forces the accelerator. cwd = the pod folder.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pyrkt import log
from pyrkt.errors import RktError
from pyrkt.stage1.container import args as cargs
from pyrkt.stage1.plan import PodPlan

if TYPE_CHECKING:
    from pyrkt.net.dns import CniDns

SPECIAL_NETS = ("none", "host")


def plan_for(a: cargs.RunArgs, pod: Path) -> PodPlan:
    from pyrkt.stage1.planner import build_plan

    plan = build_plan(pod)
    changes: dict[str, object] = {}
    if a.net is not None:
        changes["net"] = a.net
    if a.interactive is not None:
        changes["interactive"] = a.interactive
    if a.hostname:
        changes["hostname"] = a.hostname
    if not plan.hostname and not a.hostname:
        changes["hostname"] = f"rkt-{a.uuid}"
    return dataclasses.replace(plan, **changes)  # type: ignore[arg-type]


def run_main(a: cargs.RunArgs) -> int:
    from pyrkt.stage1.kvm import accel, runner
    from pyrkt.stage1.kvm.vm import Tap

    pod = Path.cwd()
    plan = plan_for(a, pod)
    opts = runner.RunOptions(
        debug=a.debug, accel=accel.parse_forced(a.extra.get("kvm-accel")), exec_waiter=True
    )
    if plan.net == "host":
        raise RktError(
            "--net=host is not supported by the kvm stage1",
            "a VM has its own kernel and network stack: use --net=default and --port",
        )
    if plan.net == "none":
        opts = dataclasses.replace(opts, etc_files=_etc_files(plan, None, ()))
        return runner.run_pod(pod, plan, opts)
    from pyrkt.net.api import setup_pod_network, teardown_pod_network
    from pyrkt.net.tap import guest_network_script

    dirs = [Path("/usr/lib/rkt"), Path(a.local_config or "/etc/rkt")]
    try:
        net = setup_pod_network(
            pod, plan.uuid, plan.net, config_dirs=dirs, ports=plan.ports, for_vm=True
        )
        ifaces = [i for i in net.interfaces if i.tap]
        opts = dataclasses.replace(
            opts,
            taps=tuple(Tap(i.tap, i.mac) for i in ifaces),
            netns=net.netns,
            guest_net_script=guest_network_script([i.state for i in ifaces]),
            etc_files=_etc_files(plan, net.first_ip or None, net.dns),
        )
        return runner.run_pod(pod, plan, opts)
    finally:
        teardown_pod_network(pod)


def _etc_files(
    plan: PodPlan, pod_ip: str | None, cni_dns: tuple[CniDns, ...]
) -> tuple[tuple[str, str], ...]:
    """/etc/hostname, hosts, resolv.conf for every app (rendered by pyrkt.net)."""
    from pyrkt.net.dns import render_hosts, render_resolv_conf

    files = [
        ("hostname", plan.hostname + "\n"),
        ("hosts", render_hosts(plan.hostname, plan.dns, pod_ip)),
    ]
    resolv = render_resolv_conf(plan.dns, cni_dns)
    if resolv is not None:
        files.append(("resolv.conf", resolv))
    return tuple(files)


def main(argv: list[str]) -> int:
    log.set_prefix("stage1")
    if not argv:
        print("usage: python -m pyrkt.stage1.kvm run|enter|stop|gc ...", file=sys.stderr)
        return 254
    verb, rest = argv[0], argv[1:]
    if "--debug" in rest or "--debug=true" in rest:
        log.set_debug(True)
    try:
        if verb == "run":
            return run_main(cargs.parse_run(rest))
        if verb == "enter":
            from pyrkt.stage1.kvm import agent

            e = cargs.parse_enter(rest)
            if not e.appname:
                raise RktError("stage1 enter: --appname is required")
            return agent.enter(Path.cwd(), e.appname, e.cmd or ("/bin/sh",))
        if verb == "stop":
            from pyrkt.stage1.kvm import lifecycle

            return lifecycle.stop(Path.cwd(), force=cargs.parse_stop(rest).force)
        if verb == "gc":
            from pyrkt.stage1.kvm import lifecycle

            cargs.parse_uuid(rest, "gc")
            return lifecycle.gc(Path.cwd())
        raise RktError(f"unknown stage1 entrypoint {verb!r}")
    except RktError as e:
        print(f"stage1: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        print(f"stage1: {e}", file=sys.stderr)
        return 254


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
