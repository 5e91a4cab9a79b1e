"""One real VM (QEMU, TCG where KVM is unusable) on a pod network set up for VMs.

QEMU runs inside the pod's namespace and opens the tap `setup_pod_network(for_vm=True)`
made; a busybox initramfs loads virtio-net, runs `guest_network_script` and serves HTTP;
the host fetches it at the address CNI assigned, and through a `--port` forward on
127.0.0.1. On failure the serial log and the QEMU command line are printed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_net_cni import Pods, pods_in

from pyrkt.net import guest_network_script, netns_exec_argv
from pyrkt.stage1.plan import PortPlan
from support.net import free_port, http_get

pytestmark = [pytest.mark.root, pytest.mark.cni, pytest.mark.qemu]


def _debian_kernel() -> str:
    """The newest installed Debian kernel that has its modules (not the host's own)."""
    kvers = sorted(
        p.name.removeprefix("vmlinuz-") for p in Path("/boot").glob("vmlinuz-*")
        if (Path("/lib/modules") / p.name.removeprefix("vmlinuz-") / "modules.dep").exists()
    )
    return kvers[-1] if kvers else "none"


KVER = _debian_kernel()
KERNEL = Path(f"/boot/vmlinuz-{KVER}")
MODULES = ("virtio_pci", "virtio_net")


@pytest.fixture
def pods(tmp_path: Path) -> Iterator[Pods]:
    yield from pods_in(tmp_path)


def module_paths() -> list[str]:
    out: list[str] = []
    for m in MODULES:
        deps = subprocess.run(["modprobe", "-S", KVER, "--show-depends", m], check=True,
                              capture_output=True, text=True).stdout
        for line in deps.splitlines():
            parts = line.split()
            if parts and parts[0] == "insmod" and parts[1] not in out:
                out.append(parts[1])
    return out


HTTPD = "httpd -p 0.0.0.0:80 -h /www"


def build_initramfs(root: Path, net_script: str, service: str = HTTPD) -> Path:
    """A busybox initramfs: load virtio-net, run net_script, start service, say READY."""
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "mods").mkdir()
    loads = []
    for i, m in enumerate(module_paths()):
        shutil.copy(m, root / "mods" / f"{i:02d}.ko")
        loads.append(f"busybox insmod /mods/{i:02d}.ko")
    (root / "www").mkdir()
    (root / "www" / "index.html").write_text("hello from a VM\n")
    init = "\n".join([
        "#!/bin/sh",
        "export PATH=/bin",
        "/bin/busybox --install -s /bin",
        "mkdir -p /proc /sys /dev && mount -t proc proc /proc && mount -t sysfs sys /sys",
        "mount -t devtmpfs dev /dev 2>/dev/null",
        *loads,
        "sleep 0.2",
        net_script,
        "ip -4 addr; ip route",
        service,
        "echo RKT-GUEST-READY",
        "while :; do sleep 60; done",
    ])
    (root / "init").write_text(init)
    (root / "init").chmod(0o755)
    out = root.parent / "initramfs.cpio"
    files = subprocess.run("find . | cpio -o -H newc --quiet", shell=True, cwd=root,
                           check=True, capture_output=True).stdout
    out.write_bytes(files)
    return out


@pytest.mark.skipif(not KERNEL.exists(), reason="needs a Debian kernel (linux-image-amd64)")
def test_real_vm_owns_the_pod_address(pods: Pods) -> None:
    hp = free_port()
    pn = pods.new("default", ports=(PortPlan("http", "tcp", 80, hp),), for_vm=True)
    assert pn.netns is not None
    (iface,) = pn.interfaces
    initrd = build_initramfs(pods.tmp / "initramfs", guest_network_script([iface.state]))
    serial = pods.tmp / "serial.log"
    argv = qemu_argv(initrd, serial, iface.tap, iface.mac)
    qemu = pods.spawn(pn.netns, argv)
    with vm_diagnostics(serial, pn.netns, argv):
        wait_ready(qemu, serial)
        assert http_get(iface.ip) == "hello from a VM\n"
        assert http_get("127.0.0.1", hp) == "hello from a VM\n"


def qemu_argv(initrd: Path, serial: Path, tap: str, mac: str) -> list[str]:
    """QEMU for a one-NIC test guest (TCG unless PYRKT_TEST_KVM=1 and /dev/kvm)."""
    argv = [
        "qemu-system-x86_64", "-M", "pc", "-nodefaults", "-no-user-config", "-display", "none",
        "-no-reboot", "-m", "256", "-smp", "1", "-kernel", str(KERNEL), "-initrd", str(initrd),
        "-append", "console=ttyS0 panic=-1 quiet", "-serial", f"file:{serial}",
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={mac},romfile=",
    ]
    if os.access("/dev/kvm", os.R_OK | os.W_OK) and os.environ.get("PYRKT_TEST_KVM") == "1":
        return [*argv, "-accel", "kvm"]
    return [*argv, "-accel", "tcg"]


def wait_ready(qemu: subprocess.Popen[bytes], serial: Path, timeout: float = 180) -> None:
    """Wait for the guest's READY line on the serial console."""
    deadline = time.monotonic() + timeout
    while "RKT-GUEST-READY" not in (serial.read_text(errors="replace")
                                    if serial.exists() else ""):
        assert qemu.poll() is None, "QEMU exited"
        assert time.monotonic() < deadline, "the guest did not come up"
        time.sleep(0.2)


@contextlib.contextmanager
def vm_diagnostics(serial: Path, netns: Path, argv: list[str]) -> Iterator[None]:
    """On any failure inside, print the QEMU command line and the serial log."""
    try:
        yield
    except BaseException:
        print("QEMU:", shlex.join(netns_exec_argv(netns) + argv))
        print("serial log:\n" + (serial.read_text(errors="replace") if serial.exists() else ""))
        raise
