"""kvmtool (`lkvm run`) command line for a `VmPlan` (pure).

Flags as kvmtool's `builtin-run.c` and `virtio/net.c` define them: `--name`, `-c/--cpus`,
`-m/--mem` (MiB), `-k/--kernel`, `-i/--initrd`, `-p/--params`, `--console
serial|virtio|hv`, `--9p DIR,TAG` (one per share), `-n/--network
mode=tap,tapif=IF,guest_mac=MAC,script=none` (one per NIC; `mode=none` for no NIC,
since kvmtool otherwise adds a user-mode NIC of its own).

What kvmtool cannot do, compared with QEMU: it has one console and no virtio-serial
ports, so the agent channel (enter/stop) and separate app stdout/stderr ports are not
wired (`supports_agent()` is False; the guest writes app output to the console); its
9p export has no read-only mode, so a plan with a read-only share is refused rather
than silently made writable; it needs a working /dev/kvm (no TCG).

UNTESTED HERE: no kvmtool package exists for Debian bookworm or trixie, so this driver
is checked only against kvmtool's documented command line (unit tests); the
end-to-end test runs only where an `lkvm` binary is on the PATH.
"""

from __future__ import annotations

from pyrkt.errors import RktError
from pyrkt.stage1.kvm.vm import Accel, ConsoleMode, VmPlan

# kvmtool prepends its own "noapic noacpi pci=conf1 reboot=k panic=1 ..." and a console=
# for the console it emulates; we name the console we use explicitly.
CONSOLE_DEVICE = {"virtio": "hvc0", "serial": "ttyS0"}


class Lkvm:
    name = "lkvm"

    def binary(self) -> str:
        return "lkvm"

    def supports_agent(self) -> bool:
        return False

    def console(self, plan: VmPlan) -> str:
        """kvmtool's console type: a virtio console, except serial for interactive pods."""
        return "serial" if plan.console is ConsoleMode.INTERACTIVE else "virtio"

    def argv(self, plan: VmPlan) -> list[str]:
        if plan.accel is not Accel.KVM:
            raise RktError(
                "lkvm needs hardware virtualization (/dev/kvm); it has no emulator",
                "use the qemu stage1 (stage1-kvm-qemu.aci) on this host",
            )
        for share in plan.shares:
            if share.read_only:
                raise RktError(
                    f"lkvm cannot export {share.path} read-only over 9p",
                    "use the qemu stage1 for read-only volumes",
                )
        console = self.console(plan)
        cmdline = [p for p in plan.cmdline if not p.startswith("console=")]
        cmdline.append(f"console={CONSOLE_DEVICE[console]}")
        a: list[str] = [
            self.binary(), "run",
            "--name", "rkt",
            "--cpus", str(plan.vcpus),
            "--mem", str(plan.memory_mib),
            "--kernel", str(plan.kernel),
        ]  # fmt: skip
        if plan.initrd is not None:
            a += ["--initrd", str(plan.initrd)]
        a += ["--params", " ".join(cmdline), "--console", console]
        for share in plan.shares:
            if "," in str(share.path) or "," in share.tag:
                raise RktError(f"lkvm cannot share a path or tag with a comma: {share.path}")
            a += ["--9p", f"{share.path},{share.tag}"]
        if plan.taps:
            for tap in plan.taps:
                a += [
                    "--network",
                    f"mode=tap,tapif={tap.ifname},guest_mac={tap.mac},script=none",
                ]
        else:
            a += ["--network", "mode=none"]
        a += list(plan.extra_args)
        return a
