"""What the rkt-runtime tests share: OCI bundles, a private containerd, podman with a
private store, and the host-side traces a VM container may leave.

containerd is Debian's 1.6, started per test module with its own root, state folder
and socket under a temp folder (loopback only: it serves a unix socket), the CRI plugin
off unless asked, and stopped by its PID. Its runc shim keeps runtime state in
`/run/containerd/runc/<namespace>`: each fixture uses a namespace of its own and removes
that folder. podman gets `--root`/`--runroot`/`--network-config-dir` under a temp
folder, cgroupfs (no systemd here) and file events.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.images import ImageConfigSpec, busybox_rootfs, oci_layout
from support.procs import qemu_pids

RUNTIME = Path(sys.executable).with_name("rkt-runtime")


def bundle_config(args: Sequence[str], *, terminal: bool = False,
                  **over: Any) -> dict[str, Any]:
    """A config.json like `runc spec` writes, running args."""
    c: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": terminal, "user": {"uid": 0, "gid": 0}, "args": list(args),
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                             for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "oci-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
        ],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts",
                                                        "mount")]},
    }
    c.update(over)
    return c


def make_bundle(d: Path, args: Sequence[str], rootfs: Path | None = None,
                **over: Any) -> Path:
    """A bundle at d (its rootfs a copy of rootfs, else a fresh busybox tree)."""
    d.mkdir(parents=True, exist_ok=True)
    if rootfs is not None:
        shutil.copytree(rootfs, d / "rootfs", symlinks=True)
    else:
        busybox_rootfs(d / "rootfs")
    (d / "config.json").write_text(json.dumps(bundle_config(args, **over)))
    return d


def set_config(bundle: Path, **over: Any) -> None:
    c = json.loads((bundle / "config.json").read_text())
    c.update(over)
    (bundle / "config.json").write_text(json.dumps(c))


def set_args(bundle: Path, args: Sequence[str]) -> None:
    c = json.loads((bundle / "config.json").read_text())
    c["process"]["args"] = list(args)
    (bundle / "config.json").write_text(json.dumps(c))


def busybox_archive(work: Path, tag: str = "1") -> Path:
    """A busybox image as an OCI image layout in a tar (`ctr image import`)."""
    root = busybox_rootfs(work / "rootfs")
    oci_layout(work / "layout", [root], ImageConfigSpec(cmd=["sh"]), tag=tag)
    out = work / "busybox-oci.tar"
    with tarfile.open(out, "w") as t:
        t.add(work / "layout", arcname=".")
    return out


def busybox_rootfs_tar(work: Path) -> Path:
    """A busybox root tree as a plain tar (`podman import`)."""
    root = busybox_rootfs(work / "podman-rootfs")
    out = work / "busybox-rootfs.tar"
    with tarfile.open(out, "w") as t:
        t.add(root, arcname=".")
    return out


def guest_release() -> str:
    """The kernel release the VMs run (the tailored kernel, else the distro's)."""
    from pyrkt.stage1.build import kernel
    from pyrkt.stage1.kvm import assets

    k = kernel.cached_tailored_kernel() or kernel.distro_kernel()
    return assets.kernel_release(k.image)


def leftovers(root: Path) -> list[str]:
    """What a runtime root may still hold after every container was deleted: state
    folders, QEMUs, mounts."""
    found = [f"state folder {p}" for p in root.iterdir()] if root.is_dir() else []
    found += [f"QEMU pid {p}" for p in qemu_pids(str(root))]
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {ln.split()[4]}" for ln in f if str(root) in ln]
    # the VMs' cgroups (the kvm stage1's jail makes them; pod names "oci-...")
    found += [f"cgroup {d}" for d in Path("/sys/fs/cgroup").glob("*/pyrkt/oci-*")]
    return found


def runtime_diagnostics(root: Path) -> str:
    """Every container's QEMU command line and serial log under a runtime root."""
    out = []
    for pod in sorted(root.glob("*/pod")):
        for name in ("cmdline", "serial.log"):
            p = pod / "kvm" / name
            with contextlib.suppress(OSError):
                out.append(f"--- {p}:\n{p.read_text(errors='replace')}")
    return "\n".join(out) or f"(nothing under {root})"


@dataclass
class Containerd:
    dir: Path
    address: str
    namespace: str
    pid: int

    @property
    def runtime_root(self) -> Path:
        """Where the runc shim tells the runtime to keep its state (`--root`)."""
        return Path("/run/containerd/runc") / self.namespace

    def ctr(self, *args: str, timeout: float = 300,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "--address", self.address, "-n", self.namespace,
                               *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=check)

    def diagnostics(self) -> str:
        log = self.dir / "containerd.log"
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        return f"--- containerd log (tail):\n{tail}\n{runtime_diagnostics(self.runtime_root)}"


CONTAINERD_CONFIG = """version = 2
root = "{dir}/root"
state = "{dir}/state"
{disabled}
[grpc]
  address = "{dir}/c.sock"
[ttrpc]
  address = "{dir}/c.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
{extra}
"""


@contextlib.contextmanager
def containerd(work: Path, *, cri: bool = False, extra: str = "") -> Iterator[Containerd]:
    """A containerd of our own (stopped by its PID; its containers removed first)."""
    work.mkdir(parents=True, exist_ok=True)
    disabled = "" if cri else 'disabled_plugins = ["io.containerd.grpc.v1.cri"]'
    cfg = work / "config.toml"
    cfg.write_text(CONTAINERD_CONFIG.format(dir=work, disabled=disabled, extra=extra))
    log = open(work / "containerd.log", "w")  # noqa: SIM115 (closed below)
    p = subprocess.Popen(["containerd", "-c", str(cfg)], stdout=log, stderr=log,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    c = Containerd(work, f"{work}/c.sock", f"pyrkt-{uuid.uuid4().hex[:8]}", p.pid)
    try:
        deadline = time.monotonic() + 60
        while c.ctr("version").returncode != 0:
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("containerd did not start:\n" + c.diagnostics())
            time.sleep(0.2)
        yield c
    finally:
        for task in c.ctr("task", "ls", "-q").stdout.split():
            c.ctr("task", "kill", "-s", "KILL", task)
        time.sleep(1)
        for task in c.ctr("task", "ls", "-q").stdout.split():
            c.ctr("task", "delete", "-f", task)
        for ctr_id in c.ctr("container", "ls", "-q").stdout.split():
            c.ctr("container", "delete", ctr_id)
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()
        with contextlib.suppress(OSError):  # empty once every container was deleted
            c.runtime_root.rmdir()
        with contextlib.suppress(OSError):
            subprocess.run(["umount", "-R", str(work / "state")], capture_output=True,
                           check=False)
        shutil.rmtree(work, ignore_errors=True)


PODMAN_BRIDGE = "cni-podman0"


@dataclass
class Podman:
    dir: Path
    runtime_root: Path

    def argv(self, *args: str) -> list[str]:
        return ["podman", "--root", f"{self.dir}/store", "--runroot", f"{self.dir}/run",
                "--cgroup-manager=cgroupfs", "--events-backend=file",
                "--network-config-dir", f"{self.dir}/cni", "--tmpdir", f"{self.dir}/tmp",
                "--runtime", str(RUNTIME), *args]

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)


@contextlib.contextmanager
def podman(work: Path) -> Iterator[Podman]:
    """podman with a private store; every container removed and the store wiped after."""
    work.mkdir(parents=True, exist_ok=True)
    # podman gives the runtime no --root: it keeps the default (docs/oci-runtime.md)
    pm = Podman(work, Path("/run/pyrkt-runtime"))
    bridge = Path("/sys/class/net") / PODMAN_BRIDGE
    had_bridge = bridge.exists()
    try:
        yield pm
    finally:
        pm("rm", "-a", "-f", "-t", "0")
        pm("system", "reset", "-f")
        subprocess.run(["umount", "-R", str(work)], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)
        # podman's default network makes its bridge on first use and leaves it: ours to
        # remove if it was not there before and nothing is attached to it any more
        if not had_bridge and bridge.exists() and not any((bridge / "brif").iterdir()):
            subprocess.run(["ip", "link", "del", PODMAN_BRIDGE], capture_output=True,
                           check=False)
        with contextlib.suppress(OSError):
            pm.runtime_root.rmdir()  # made by rkt-runtime for podman's containers


def wait_for(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def env_without_debug() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "RKT_DEBUG"}
