"""The kvmtool driver's command line, checked against kvmtool's documented `lkvm run` flags.

KVMTOOL_RUN_OPTIONS mirrors the option table of kvmtool's builtin-run.c (long name ->
short letter, takes a value) and the keys its virtio/net.c `--network` parser accepts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyrkt.errors import RktError
from pyrkt.stage1.kvm.hypervisors import get
from pyrkt.stage1.kvm.hypervisors.lkvm import Lkvm
from pyrkt.stage1.kvm.vm import Accel, ConsoleMode, Share, Tap, VmPlan

KVMTOOL_RUN_OPTIONS: dict[str, tuple[str | None, bool]] = {
    "name": (None, True),
    "cpus": ("c", True),
    "mem": ("m", True),
    "disk": ("d", True),
    "9p": (None, True),
    "console": (None, True),
    "kernel": ("k", True),
    "initrd": ("i", True),
    "params": ("p", True),
    "network": ("n", True),
    "balloon": (None, False),
    "rng": (None, False),
    "nodefaults": (None, False),
    "debug": (None, False),
}
NETWORK_KEYS = {"guest_mac", "mode", "script", "downscript", "guest_ip", "host_ip",
                "trans", "tapif", "vhost", "fd", "mq"}  # fmt: skip


def parse_lkvm_run(argv: list[str]) -> dict[str, list[str]]:
    """Parse `lkvm run ...` the way kvmtool's option parser does (long options only)."""
    assert argv[:2] == ["lkvm", "run"]
    out: dict[str, list[str]] = {}
    i = 2
    while i < len(argv):
        tok = argv[i]
        assert tok.startswith("--"), f"positional argument {tok!r} would be taken as a kernel"
        name, eq, val = tok[2:].partition("=")
        assert name in KVMTOOL_RUN_OPTIONS, f"kvmtool has no --{name}"
        takes_value = KVMTOOL_RUN_OPTIONS[name][1]
        if takes_value and not eq:
            i += 1
            val = argv[i]
        out.setdefault(name, []).append(val)
        i += 1
    return out


def plan(**kw: object) -> VmPlan:
    base: dict[str, object] = dict(
        kernel=Path("/s1/kvm/vmlinuz"),
        initrd=Path("/s1/kvm/initrd.img"),
        cmdline=("console=ttyS0", "quiet", "rkt.uuid=abc"),
        vcpus=2,
        memory_mib=384,
        accel=Accel.KVM,
        shares=(Share("rkt.stage1", Path("/pods/run/abc/stage1/rootfs")),),
    )
    base.update(kw)
    return VmPlan(**base)  # type: ignore[arg-type]


def test_registered_as_lkvm() -> None:
    hv = get("lkvm")
    assert hv.name == "lkvm" and hv.binary() == "lkvm"
    assert not hv.supports_agent()


def test_argv_uses_kvmtool_flags() -> None:
    opts = parse_lkvm_run(Lkvm().argv(plan()))
    assert opts["cpus"] == ["2"]
    assert opts["mem"] == ["384"]
    assert opts["kernel"] == ["/s1/kvm/vmlinuz"]
    assert opts["initrd"] == ["/s1/kvm/initrd.img"]
    assert opts["9p"] == ["/pods/run/abc/stage1/rootfs,rkt.stage1"]
    assert opts["console"] == ["virtio"]
    assert opts["name"] == ["rkt"]
    params = opts["params"][0].split()
    # the console named on the cmdline is the one kvmtool emulates, exactly once
    assert [p for p in params if p.startswith("console=")] == ["console=hvc0"]
    assert "quiet" in params and "rkt.uuid=abc" in params
    # no NIC asked for: kvmtool must not add its default user-mode NIC
    assert opts["network"] == ["mode=none"]


def test_taps_become_tap_nics() -> None:
    taps = (Tap("tap0", "02:00:00:00:00:01"), Tap("tap1", "02:00:00:00:00:02"))
    opts = parse_lkvm_run(Lkvm().argv(plan(taps=taps)))
    nets = [dict(kv.split("=", 1) for kv in n.split(",")) for n in opts["network"]]
    assert all(set(n) <= NETWORK_KEYS for n in nets)
    assert [(n["mode"], n["tapif"], n["guest_mac"]) for n in nets] == [
        ("tap", "tap0", "02:00:00:00:00:01"),
        ("tap", "tap1", "02:00:00:00:00:02"),
    ]
    assert all(n["script"] == "none" for n in nets)


def test_interactive_uses_serial_console() -> None:
    opts = parse_lkvm_run(Lkvm().argv(plan(console=ConsoleMode.INTERACTIVE)))
    assert opts["console"] == ["serial"]
    assert "console=ttyS0" in opts["params"][0].split()


def test_refuses_tcg() -> None:
    with pytest.raises(RktError, match="hardware virtualization"):
        Lkvm().argv(plan(accel=Accel.TCG))


def test_refuses_read_only_share_instead_of_making_it_writable() -> None:
    shares = (Share("vol", Path("/srv/data"), read_only=True),)
    with pytest.raises(RktError, match="read-only"):
        Lkvm().argv(plan(shares=shares))
