"""`python -m pyrkt.stage1.kvm run|enter|stop|gc ...`: the kvm flavor's entrypoints.

Arguments follow rkt's stage1 contract (parsed by the shared `stage1.container.args`);
our extension `--kvm-accel=kvm|tcg` forces the accelerator. cwd = the pod folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyrkt.errors import RktError
from pyrkt.record import replace
from pyrkt.stage1.container import args as cargs
from pyrkt.stage1.plan import PodPlan

# not `from typing import TYPE_CHECKING`: importing typing costs ~2 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyrkt.net.dns import CniDns

SPECIAL_NETS = ("none", "host")


def run_main(a: cargs.RunArgs) -> int:
    from pyrkt.stage1.kvm import accel, runner, templates
    from pyrkt.stage1.kvm.vm import Tap

    pod = Path.cwd()
    plan = cargs.plan_for(a, pod)
    flag = a.extra.get(templates.FLAG_TEMPLATE)
    template = templates.parse_switch(flag)
    if flag is not None and template is None:
        raise RktError(f"--{templates.FLAG_TEMPLATE}={flag}: expected on or off")
    opts = runner.RunOptions(
        debug=a.debug, accel=accel.parse_forced(a.extra.get("kvm-accel")), exec_waiter=True,
        rootfs=a.extra.get("kvm-rootfs"), template=template,
        protect_paths=not a.disable_paths, escape_key=os.isatty(0),
    )
    if a.disable_seccomp:  # --insecure-options=seccomp: no app's own filter either
        plan = replace(plan, apps=tuple(replace(app, seccomp=None) for app in plan.apps))
    if a.disable_capabilities:  # --insecure-options=capabilities: the full bounding set
        from pyrkt.stage1.kvm.guest.script import ALL_CAPS

        plan = replace(plan, apps=tuple(replace(app, capabilities=ALL_CAPS)
                                        for app in plan.apps))
    if plan.net == "host":
        raise RktError(
            "--net=host is not supported by the kvm stage1",
            "a VM has its own kernel and network stack: use --net=default and --port",
        )
    if plan.net == "none":
        opts = replace(opts, etc_files=_etc_files(plan, None, ()))
        return runner.run_pod(pod, plan, opts)
    from pyrkt.net.api import setup_pod_network, teardown_pod_network
    from pyrkt.net.tap import guest_network_script

    dirs = [Path("/usr/lib/rkt"), Path(a.local_config or "/etc/rkt")]
    try:
        net = setup_pod_network(
            pod, plan.uuid, plan.net, config_dirs=dirs, ports=plan.ports, for_vm=True
        )
        ifaces = [i for i in net.interfaces if i.tap]
        opts = replace(
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
        ("hosts", render_hosts(plan.hostname, plan.dns)),
    ]
    resolv = render_resolv_conf(plan.dns, cni_dns)
    if resolv is not None:
        files.append(("resolv.conf", resolv))
    return tuple(files)


def _enter(rest: list[str]) -> int:
    from pyrkt.stage1.kvm import agent

    e = cargs.parse_enter(rest)
    if not e.appname:
        raise RktError("stage1 enter: --appname is required")
    return agent.enter(Path.cwd(), e.appname, e.cmd or ("/bin/sh",))


def _stop(rest: list[str]) -> int:
    from pyrkt.stage1.kvm import lifecycle

    return lifecycle.stop(Path.cwd(), force=cargs.parse_stop(rest).force)


def _gc(rest: list[str]) -> int:
    from pyrkt.stage1.kvm import lifecycle

    cargs.parse_uuid(rest, "gc")
    return lifecycle.gc(Path.cwd())


def main(argv: list[str]) -> int:
    return cargs.entry_main(argv, "kvm", {
        "run": lambda rest: run_main(cargs.parse_run(rest)),
        "enter": _enter, "stop": _stop, "gc": _gc,
    })


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
