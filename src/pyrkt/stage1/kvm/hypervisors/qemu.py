"""QEMU command line for a `VmPlan` (pure).

Devices: one virtio-serial bus whose port numbers are fixed (vm.PORT_*): app stdout,
app stderr, the enter/stop agent, the terminal port, a template's go port. ISA serial
ttyS0 carries the firmware and kernel console (to a log file, and to stderr under
--debug); interactively, ttyS1 is the app's terminal on QEMU's stdio with the mux
escape (Ctrl-a x). Each share is a virtio-9p device, each disk a virtio-blk one (its
nodes and device as JSON: `blockdev_nodes`, `disk_device`, what a hot-plug over QMP
sends too; a plan whose disks are `hotplugged` has none on its command line); a
template's disk slots (`slot_args`) come before them, each holding a disk or empty. A NIC
carries no option ROM (no PXE: SeaBIOS would run iPXE at every boot).
"""

from __future__ import annotations

import json

from pyrkt.stage1.kvm.vm import (
    DISK_SLOT_BYTES,
    PORT_AGENT,
    PORT_GO,
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


def slot_id(index: int) -> str:
    """A disk slot's device id, and an empty slot's serial number (never a disk's)."""
    return f"rkt-slot{index}"


def slot_args(index: int, disk: Disk | None) -> list[str]:
    """Disk slot index (VmPlan.disk_slots) holding disk, or empty: a `null-co` node of
    DISK_SLOT_BYTES that reads zeros and drops writes (nothing of one pod can be in it
    for another). The device is the same either way (a template's layout: the same id,
    the same virtio-blk properties and features, writable as a pod's disk), but for its
    backend and its serial number, which QEMU does not migrate: the guest asks the
    device for its serial when it reads it."""
    if disk is not None:
        nodes = blockdev_nodes(disk)
        device = {**disk_device(disk), "id": slot_id(index)}
    else:
        name = f"{slot_id(index)}-empty"
        nodes = [{"node-name": name, "driver": "null-co", "size": DISK_SLOT_BYTES,
                  "read-zeroes": True, "read-only": False}]
        device = {"driver": "virtio-blk-pci", "id": slot_id(index), "drive": name,
                  "serial": slot_id(index)}
    a: list[str] = []
    for node in nodes:
        a += ["-blockdev", json.dumps(node, separators=(",", ":"))]
    return [*a, "-device", json.dumps(device, separators=(",", ":"))]


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
        if plan.memory_file is not None:
            machine += ",memory-backend=ram"
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
        ]  # fmt: skip
        if plan.initrd is not None:
            a += ["-initrd", str(plan.initrd)]
        a += ["-append", " ".join(plan.cmdline)]
        if plan.memory_file is not None:
            a += ["-object", _opt(
                f"memory-backend-file,id=ram,size={plan.memory_mib}M",
                f"mem-path={plan.memory_file.path}",
                f"share={'on' if plan.memory_file.shared else 'off'}",
            )]
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
        for i, slot in enumerate(plan.disk_slots):
            a += slot_args(i, slot)
        for disk in () if plan.disks_hotplugged else plan.disks:
            for node in blockdev_nodes(disk):
                a += ["-blockdev", json.dumps(node, separators=(",", ":"))]
            a += ["-device", json.dumps(disk_device(disk), separators=(",", ":"))]
        if plan.balloon:
            a += ["-device", "virtio-balloon-pci,free-page-reporting=on"]
        for i, tap in enumerate(plan.taps):
            if not tap.ifname:  # a template's NIC: no backend (a pod's tap replaces it)
                a += ["-device", f"virtio-net-pci,romfile=,mac={tap.mac}"]
                continue
            a += [
                "-netdev", f"tap,id=net{i},ifname={tap.ifname},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=net{i},romfile=,mac={tap.mac}",
            ]  # fmt: skip
        if plan.qmp_socket is not None:
            a += ["-qmp", f"unix:{plan.qmp_socket},server=on,wait=off"]
        if plan.qmp_fd is not None:
            a += ["-chardev", f"socket,id=qmp,fd={plan.qmp_fd},server=off",
                  "-mon", "chardev=qmp,mode=control"]  # fmt: skip
        if plan.incoming:
            a += ["-incoming", "defer"]
        if plan.pidfile is not None:
            a += ["-pidfile", str(plan.pidfile)]
        a += list(plan.extra_args)
        return a

    def _accel(self, plan: VmPlan) -> str:
        if plan.accel is Accel.TCG and plan.tcg_tb_mib:
            return f"tcg,tb-size={plan.tcg_tb_mib}"
        return plan.accel.value

    def _console(self, plan: VmPlan) -> list[str]:
        # The serial log is appended to: a restored pod's starts with its template's boot.
        if plan.console in (ConsoleMode.INTERACTIVE, ConsoleMode.TERMINAL):
            # ttyS0: firmware and kernel messages (log); ttyS1: the app's terminal. Only
            # rkt's own --interactive gets the escape key (Ctrl-a x) and the monitor.
            log = (
                f"file,id=log,path={plan.serial_log},append=on" if plan.serial_log
                else "null,id=log"
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
            log = f",logfile={plan.serial_log},logappend=on" if plan.serial_log else ""
            a = ["-chardev", f"file,id=con,path=/proc/self/fd/2,append=on{log}"]
        elif plan.serial_log is not None:
            a = ["-chardev", f"file,id=con,path={plan.serial_log},append=on"]
        else:
            a = ["-chardev", "null,id=con"]
        a += ["-serial", "chardev:con"]
        if plan.escape_key:  # our terminal, read for Ctrl-a x only (mux), on ttyS1
            a += ["-chardev", "stdio,id=con1,mux=on,signal=on", "-serial", "chardev:con1"]
        elif plan.uniform_devices:  # the interactive layout's ttyS1, unused
            a += ["-chardev", "null,id=con1", "-serial", "chardev:con1"]
        return a

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
        elif plan.uniform_devices:
            ports.append((PORT_STDOUT, "out", "null,id=out"))
        if plan.app_stderr is not None:
            log = f",logfile={d / 'stderr.log'},logappend=on" if d else ""
            spec = f"file,id=err,path={plan.app_stderr},append=on{log}"
            ports.append((PORT_STDERR, "err", spec))
        elif plan.uniform_devices:
            ports.append((PORT_STDERR, "err", "null,id=err"))
        if plan.agent_socket is not None:
            spec = f"socket,id=agent,path={plan.agent_socket},server=on,wait=off"
            ports.append((PORT_AGENT, "agent", spec))
        if plan.tty_socket is not None:
            spec = f"socket,id=tty,path={plan.tty_socket},server=on,wait=off"
            ports.append((PORT_TTY, "tty", spec))
        if plan.go_fd is not None:
            ports.append((PORT_GO, "go", f"socket,id=go,fd={plan.go_fd},server=off"))
        for nr, cid, spec in ports:
            a += [
                "-chardev", spec,
                "-device", f"virtserialport,bus=vser.0,nr={nr},chardev={cid},name=rkt.{cid}",
            ]  # fmt: skip
        return a
