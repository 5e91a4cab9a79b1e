"""The guest initramfs: busybox, the init script, rkt-exec (also /init), the kernel modules.

Written as a gzip'd `newc` cpio archive in Python (no root needed for the device node),
built once per (kernel modules, content) and cached.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pyrkt import log, proc
from pyrkt.errors import RktError

BUSYBOX = Path("/bin/busybox")
# What the guest needs from a modular distro kernel; built-in ones are skipped.
MODULES = ("virtio_pci", "virtio_console", "9pnet_virtio", "9p")
# Loaded only when the pod has NICs (`rkt.net=1` on the kernel command line).
NET_MODULES = ("virtio_net",)
# Loaded only when the apps' rootfs are disks (`rkt.disks=1`).
DISK_MODULES = ("virtio_blk", "ext4")


# What the init mounts once the modules are loaded: the pod shares, a mount plan for
# `rkt-exec --go` (a restored pod) or `rkt-exec --mount` (a booted one), which make them
# with mount(2) (no busybox `mount`: under emulation each fork+exec costs milliseconds,
# the first ones after a restore tens). (No devpts or /dev/shm: nothing runs in the
# init's view but the init; each app has its own /dev.)
# The stage1 share (the apps' rootfs) caches mmap'd pages (`cache=mmap`): executables
# and libraries are paged in by readahead instead of one 9p read per page fault (85 ->
# 19 reads for a busybox app); reads, writes and metadata stay uncached, as without.
NINEP = "trans=virtio,version=9p2000.L,msize=262144,access=any"
MOUNTS = (
    f"mount rkt.stage1 /stage1 9p {NINEP},cache=mmap\n"
    f"mount rkt.ctl /ctl 9p {NINEP}\n"
)


@dataclass
class _Entry:
    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _newc(entries: list[_Entry]) -> bytes:
    out = io.BytesIO()
    ino = 1
    for e in [*entries, _Entry("TRAILER!!!", 0)]:
        name = e.name.encode() + b"\0"
        fields = [
            ino, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, e.rdev[0], e.rdev[1], len(name), 0
        ]  # fmt: skip
        ino += 1
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields))
        out.write(name)
        out.write(b"\0" * (-(110 + len(name)) % 4))
        out.write(e.data)
        out.write(b"\0" * (-len(e.data) % 4))
    return out.getvalue()


def guest_file(name: str) -> bytes:
    return resources.files("pyrkt.stage1.kvm.guest").joinpath(name).read_bytes()


def module_paths(kver: str, modules: tuple[str, ...] = MODULES) -> list[Path]:
    """Load order of `modules` for kernel `kver` (empty when it has no modules)."""
    moddir = Path("/lib/modules") / kver
    if not (moddir / "modules.dep").exists():
        return []
    seen: list[Path] = []
    for mod in modules:
        cp = proc.run(["modprobe", "-S", kver, "--show-depends", mod], capture=True, check=False)
        for line in cp.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "insmod":
                p = Path(parts[1])
                if p not in seen:
                    seen.append(p)
    return seen


def build_rkt_exec(out: Path) -> None:
    src = guest_file("rkt-exec.c")
    with tempfile.TemporaryDirectory() as td:
        c = Path(td) / "rkt-exec.c"
        c.write_bytes(src)
        proc.run(["gcc", "-static", "-Os", "-s", "-o", out, c])


def build(out: Path, *, kver: str) -> None:
    """Write the initramfs for a kernel whose modules are in /lib/modules/<kver>."""
    if not BUSYBOX.exists():
        raise RktError(f"{BUSYBOX} not found", "install busybox-static")
    with tempfile.TemporaryDirectory() as td:
        helper = Path(td) / "rkt-exec"
        build_rkt_exec(helper)
        entries = [_Entry(d, stat.S_IFDIR | 0o755) for d in (
            "bin", "sbin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "stage1",
            "ctl", "tmp", "run", "run/rkt", "mnt",
        )]  # fmt: skip
        entries.append(_Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
        entries.append(_Entry("run/rkt-halt", stat.S_IFIFO | 0o600))  # init.sh: the halter
        # The kernel starts rkt-exec as /init (it makes the init's root a mount, which
        # each app's pivot_root needs), which execs the init script.
        entries.append(_Entry("init", stat.S_IFLNK | 0o777, b"bin/rkt-exec"))
        entries.append(_Entry("init.sh", stat.S_IFREG | 0o755, guest_file("init.sh")))
        entries.append(_Entry("etc/rkt-mounts", stat.S_IFREG | 0o644, MOUNTS.encode()))
        entries.append(_Entry("bin/busybox", stat.S_IFREG | 0o755, BUSYBOX.read_bytes()))
        entries.append(_Entry("bin/rkt-exec", stat.S_IFREG | 0o755, helper.read_bytes()))
        applets = proc.output([BUSYBOX, "--list"]).split()
        for applet in applets:
            if applet != "busybox":
                entries.append(_Entry(f"bin/{applet}", stat.S_IFLNK | 0o777, b"busybox"))
        mods = module_paths(kver)
        net_mods = [m for m in module_paths(kver, NET_MODULES) if m not in mods]
        disk_mods = [m for m in module_paths(kver, DISK_MODULES) if m not in mods + net_mods]
        for m in mods + net_mods + disk_mods:
            entries.append(_Entry(f"lib/modules/{m.name}", stat.S_IFREG | 0o644, m.read_bytes()))
        for name, group in (("rkt-modules", mods), ("rkt-modules-net", net_mods),
                            ("rkt-modules-disk", disk_mods)):
            order = "".join(f"{m.name}\n" for m in group).encode()
            entries.append(_Entry(f"etc/{name}", stat.S_IFREG | 0o644, order))
        data = gzip.compress(_newc(entries), compresslevel=6, mtime=0)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # concurrent builders
    tmp.write_bytes(data)
    os.replace(tmp, out)
    log.debug(f"kvm: wrote initramfs {out} ({len(data) // 1024} KiB, {len(mods)} modules)")


def content_key(kver: str) -> str:
    h = hashlib.sha256(kver.encode())
    for name in ("init.sh", "rkt-exec.c"):
        h.update(guest_file(name))
    h.update(str(BUSYBOX.stat().st_size).encode() if BUSYBOX.exists() else b"")
    h.update(",".join(MODULES + NET_MODULES + DISK_MODULES).encode())
    h.update(MOUNTS.encode())
    return h.hexdigest()[:16]


def cached(cache_dir: Path, *, kver: str) -> Path:
    """The initramfs for kver, built into cache_dir on first use."""
    path = cache_dir / f"initrd-{kver}-{content_key(kver)}.img"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        build(path, kver=kver)
    return path


def copy_cached(cache_dir: Path, dest: Path, *, kver: str) -> None:
    shutil.copyfile(cached(cache_dir, kver=kver), dest)
