"""QEMU command line for a `VmPlan` (pure).

Devices: one virtio-serial bus whose port numbers are fixed (vm.PORT_*): app stdout,
app stderr, the enter/stop agent. ISA serial ttyS0 carries the firmware and kernel
console (to a log file, and to stderr under --debug); interactively, ttyS1 is the app's
terminal on QEMU's stdio with the mux escape (Ctrl-a x). Each share is a virtio-9p
device, each disk a virtio-blk one (its nodes and device as JSON: `blockdev_nodes`,
`disk_device`, what a hot-plug over QMP sends too).
"""

from __future__ import annotations

import json

from pyrkt.stage1.kvm.vm import (
    PORT_AGENT,
    PORT_STDERR,
    PORT_STDOUT,
    PORT_TTY,
    Accel,
    ConsoleMode,
    Disk,
    Machine,
    VmPlan,
)

# QEMU's seccomp filter (killed on a denied call, EPERM for scheduler changes): the
# default set plus obsolete calls, set*uid/set*gid/setsid, fork/exec, and affinity and
# priority changes (docs/security.md).
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _opt(*parts: str) -> str:
    return ",".join(p for p in parts if p)


def blockdev_nodes(disk: Disk) -> list[dict[str, Any]]:
    """The disk's block nodes, base first, as `-blockdev` JSON and QMP `blockdev-add`
    arguments alike (one description for a cold boot and a hot-plug): the base image
    read-only, each qcow2 layer backed by the node before it, every layer but the last
    read-only (a scratch disk: the base alone, writable).

    A writable node has `cache.no-flush`: the guest's flushes write QEMU's qcow2
    metadata out to the host's page cache but skip the fdatasync. The layer only lives
    as long as the pod (and its export): a completed write is in the host's page cache,
    where a `kill -9` of QEMU leaves it, so ext4's journal, which orders its commits by
    completions, still finds a consistent filesystem after one; only a host crash, which
    ends the pod anyway, could lose the order. It halves the cost of an fsync in the
    guest (BENCHMARKS.md); Firecracker's default drive cache is the same trade."""
    base = f"{disk.id}-base"
    ro = not (disk.scratch and not disk.layers)
    nodes: list[dict[str, Any]] = [
        _node(f"{base}-file", ro, driver="file", filename=str(disk.base)),
        _node(base if disk.layers else disk.id, ro, driver="raw", file=f"{base}-file"),
    ]
    below = base
    for i, layer in enumerate(disk.layers):
        last = i == len(disk.layers) - 1
        name = disk.id if last else f"{disk.id}-l{i}"
        nodes += [
            _node(f"{name}-file", not last, driver="file", filename=str(layer)),
            _node(name, not last, driver="qcow2", file=f"{name}-file", backing=below),
        ]
        below = name
    return nodes


def _node(name: str, read_only: bool, **options: str) -> dict[str, Any]:
    node: dict[str, Any] = {"node-name": name, **options, "read-only": read_only}
    if not read_only:
        node["cache"] = {"no-flush": True}
    return node


def disk_device(disk: Disk) -> dict[str, Any]:
    """The disk's virtio-blk device (`-device` JSON, QMP `device_add`); the serial
    number is the disk's id (the guest finds its disks by it)."""
    return {"driver": "virtio-blk-pci", "id": f"{disk.id}-dev", "drive": disk.id,
            "serial": disk.id}


class Qemu:
    name = "qemu"

    def binary(self) -> str:
        return "qemu-system-x86_64"

    def supports_agent(self) -> bool:
        return True

    def argv(self, plan: VmPlan) -> list[str]:
        machine = plan.machine.value
        if plan.machine is Machine.MICROVM:
            machine += ",pit=on,pic=on,rtc=on"
        a: list[str] = [
            self.binary(),
            "-name", "rkt",
            "-nodefaults", "-no-user-config", "-nographic",
            "-M", machine,
            "-accel", self._accel(plan),
            "-smp", str(plan.vcpus),
            "-m", str(plan.memory_mib),
            "-no-reboot",
            "-kernel", str(plan.kernel),
            "-initrd", str(plan.initrd),
            "-append", " ".join(plan.cmdline),
        ]  # fmt: skip
        if plan.sandbox:
            a += ["-sandbox", SANDBOX]
        if plan.accel is Accel.KVM:
            a += ["-cpu", "host"]
        if plan.bios is not None:
            a += ["-bios", str(plan.bios)]
        for fd, fdset in plan.fd_sets:
            a += ["-add-fd", f"fd={fd},set={fdset}"]
        a += self._console(plan)
        a += self._serial_ports(plan)
        for i, share in enumerate(plan.shares):
            a += [
                "-fsdev",
                _opt(
                    f"local,id=fs{i}",
                    f"path={share.path}",
                    "security_model=passthrough",
                    "multidevs=remap",
                    "readonly=on" if share.read_only else "",
                ),
                "-device",
                f"virtio-9p-pci,fsdev=fs{i},mount_tag={share.tag}",
            ]
        for disk in plan.disks:
            for node in blockdev_nodes(disk):
                a += ["-blockdev", json.dumps(node, separators=(",", ":"))]
            a += ["-device", json.dumps(disk_device(disk), separators=(",", ":"))]
        if plan.balloon:
            a += ["-device", "virtio-balloon-pci,free-page-reporting=on"]
        for i, tap in enumerate(plan.taps):
            a += [
                "-netdev", f"tap,id=net{i},ifname={tap.ifname},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=net{i},mac={tap.mac}",
            ]  # fmt: skip
        if plan.qmp_socket is not None:
            a += ["-qmp", f"unix:{plan.qmp_socket},server=on,wait=off"]
        if plan.pidfile is not None:
            a += ["-pidfile", str(plan.pidfile)]
        a += list(plan.extra_args)
        return a

    def _accel(self, plan: VmPlan) -> str:
        if plan.accel is Accel.TCG and plan.tcg_tb_mib:
            return f"tcg,tb-size={plan.tcg_tb_mib}"
        return plan.accel.value

    def _console(self, plan: VmPlan) -> list[str]:
        if plan.console in (ConsoleMode.INTERACTIVE, ConsoleMode.TERMINAL):
            # ttyS0: firmware and kernel messages (log); ttyS1: the app's terminal. Only
            # rkt's own --interactive gets the escape key (Ctrl-a x) and the monitor.
            log = (
                f"file,id=log,path={plan.serial_log}" if plan.serial_log else "null,id=log"
            )
            own = plan.console is ConsoleMode.INTERACTIVE
            a = [
                "-chardev", log,
                "-serial", "chardev:log",
                "-chardev", f"stdio,id=con{',mux=on' if own else ''},signal=off",
                "-serial", "chardev:con",
            ]  # fmt: skip
            return [*a, "-mon", "chardev=con,mode=readline"] if own else a
        if plan.serial_to_stderr:
            log = f",logfile={plan.serial_log}" if plan.serial_log else ""
            return ["-chardev", f"file,id=con,path=/proc/self/fd/2,append=on{log}",
                    "-serial", "chardev:con"]  # fmt: skip
        if plan.serial_log is not None:
            return ["-chardev", f"file,id=con,path={plan.serial_log}", "-serial", "chardev:con"]
        return ["-chardev", "null,id=con", "-serial", "chardev:con"]

    def _serial_ports(self, plan: VmPlan) -> list[str]:
        # ioeventfd=off: a port's data reaches the host before the guest's next
        # instruction, so output written just before the power-off is not lost.
        a = ["-device", "virtio-serial-pci,id=vser,max_ports=8,ioeventfd=off"]
        ports: list[tuple[int, str, str]] = []
        d = plan.app_log_dir
        if plan.app_stdout is not None:
            log = f",logfile={d / 'stdout.log'},logappend=on" if d else ""
            spec = f"file,id=out,path={plan.app_stdout},append=on{log}"
            ports.append((PORT_STDOUT, "out", spec))
        if plan.app_stderr is not None:
            log = f",logfile={d / 'stderr.log'},logappend=on" if d else ""
            spec = f"file,id=err,path={plan.app_stderr},append=on{log}"
            ports.append((PORT_STDERR, "err", spec))
        if plan.agent_socket is not None:
            spec = f"socket,id=agent,path={plan.agent_socket},server=on,wait=off"
            ports.append((PORT_AGENT, "agent", spec))
        if plan.tty_socket is not None:
            spec = f"socket,id=tty,path={plan.tty_socket},server=on,wait=off"
            ports.append((PORT_TTY, "tty", spec))
        for nr, cid, spec in ports:
            a += [
                "-chardev", spec,
                "-device", f"virtserialport,bus=vser.0,nr={nr},chardev={cid},name=rkt.{cid}",
            ]  # fmt: skip
        return a
