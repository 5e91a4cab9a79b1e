"""`rkt export` of a VM pod whose apps' rootfs are disks: the guest reads its own disk.

What the pod wrote is an ext4 filesystem the guest wrote: hostile input. The host never
mounts it (a crafted ext4 is an attack on the host kernel's filesystem code) and never
parses it (e2fsprogs' debugfs or fuse2fs would do it as root). A short VM does, with the
pod's own kernel and initramfs (`rkt.export=1`, guest/init.sh): the app's disk (its
image's ext4 image, the pod's layer, and a throwaway layer on top where the journal of a
VM killed mid-write is replayed) is mounted in the guest and tarred by busybox onto a
raw scratch disk, QEMU confined as for a pod (launch.py: its jail sees the disks' files
and the pod's kvm/, where the VM's console log goes). The host then copies that tar
into the ACI member by member, refusing any member outside `rootfs/` (a guest could add
its own `manifest`) or with a `..` component; the scratch disk's size bounds what it
reads. See docs/security.md
"Reading a pod's disk back".
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from pyrkt import log
from pyrkt.errors import RktError, describe_status
from pyrkt.stage1 import contract
from pyrkt.stage1.kvm import accel, assets, disks, hypervisors
from pyrkt.stage1.kvm.vm import Disk, VmPlan

MEMORY_MIB = 256
TIMEOUT_S = 3600.0  # a large rootfs under TCG
DONE = b"rkt-init: export done"
SERIAL_TAIL = 64 << 10
SRC_ID = "rkt-src"  # the serial numbers guest/init.sh looks for
OUT_ID = "rkt-out"


def _scratch_size(base: Path) -> int:
    """Room for a tar of a filesystem of base's size (sparse: costs what it holds):
    the data, and at most a header and a padding block per 4 KiB block."""
    return 2 * base.stat().st_size + (64 << 20)


def guest_tar(pod: Path, app: str, work: Path) -> Path:
    """The app's rootfs with its changes, as the tar the export VM wrote (unchecked:
    read it with `copy_members`), in work."""
    from pyrkt.stage1.kvm.runner import TCG_TB_MIB, cache_dir_for, kernel_cmdline

    disk = disks.recorded(pod).get(app)
    if disk is None:
        raise RktError(f"pod {pod.name}: app {app!r} has no disk")
    layer = disk.layers[-1]
    if layer.parent != disks.disks_dir(pod) or not layer.is_file():
        raise RktError(f"pod {pod.name}: the disk layer of app {app!r} is missing")
    top = work / "top.qcow2"
    disks.make_layer(top, layer, "qcow2")
    out = work / "rootfs.tar"
    with open(out, "wb") as f:
        f.truncate(_scratch_size(disk.base))
    kernel, initrd = assets.asset_paths(contract.stage1_image_rootfs(pod))
    decision = accel.decide(kernel, initrd, cache_dir_for(pod), None)
    serial = pod / "kvm" / "export-serial.log"  # in the pod's kvm/, which QEMU's jail has
    vp = VmPlan(
        kernel=kernel, initrd=initrd,
        cmdline=(*kernel_cmdline(False, False, disks=True), "rkt.export=1"),
        vcpus=1, memory_mib=MEMORY_MIB, accel=decision.accel,
        disks=(Disk(SRC_ID, disk.base, (layer, top)), Disk(OUT_ID, out, scratch=True)),
        serial_log=serial, tcg_tb_mib=TCG_TB_MIB,
    )  # fmt: skip
    log.debug(f"export: reading the disk of app {app} in a VM")
    rc = _run_vm(pod, vp, cache_dir_for(pod))
    if rc != 0:
        raise RktError(f"cannot export app {app!r}: the export VM failed "
                       f"({describe_status(rc)})", f"its console log is {serial}")
    if DONE not in _tail(serial):
        raise RktError(f"cannot export app {app!r}: the export VM could not read its disk",
                       f"its console log is {serial}")  # fmt: skip
    top.unlink()
    return out


def _run_vm(pod: Path, vp: VmPlan, cache: Path) -> int:
    """Run the export VM to its end, in QEMU's jail as a pod's VM (launch.py): what
    the guest kernel reads is what the pod wrote. Its exit status."""
    import shutil
    import subprocess

    from pyrkt.stage1.kvm import launch

    hv = hypervisors.get(hypervisors.HypervisorName.QEMU.value)
    found = shutil.which(hv.binary())
    if found is None:
        raise RktError(f"{hv.binary()} not found on the PATH", "install qemu-system-x86")
    argv = hv.argv(vp)
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C"}
    fds: list[int] = []
    groups: list[Path] = []
    jailed = launch.jail_enabled(hv.name)
    try:
        if jailed:
            argv, groups = launch.confine(pod, pod.name, vp, Path(os.path.abspath(found)),
                                          argv, env, fds, None, cache)  # fmt: skip
        log.debug("export: " + " ".join(argv))
        p = launch.start(argv, pod, env, False, fds, jailed)
        for fd in fds:
            os.close(fd)
        fds = []
        try:
            return p.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            return p.wait()
    finally:
        for fd in fds:
            os.close(fd)
        launch.remove_groups(groups)


def _tail(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - SERIAL_TAIL))
            return f.read(SERIAL_TAIL)
    except OSError:
        return b""


def _checked(m: tarfile.TarInfo) -> tarfile.TarInfo:
    """m if it lies in rootfs/ (and a hard link's target too), else a refusal."""
    for name in (m.name, m.linkname if m.islnk() else "rootfs"):
        parts = name.rstrip("/").split("/")
        if parts[0] != "rootfs" or any(p in ("", ".", "..") for p in parts[1:]):
            raise RktError(f"export: the guest's tar has a member outside rootfs/: {name!r}")
    if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.ischr() or m.isblk()
            or m.isfifo()):
        raise RktError(f"export: the guest's tar has an unknown member type: {m.name!r}")
    return m


def copy_members(guest: Path, dst: tarfile.TarFile) -> int:
    """Copy the guest's tar's members (checked) into dst; how many."""
    n = 0
    try:
        with tarfile.open(guest, "r|") as src:
            for m in src:
                _checked(m)
                m.uname = m.gname = ""  # numeric owners, as `tar --numeric-owner`
                dst.addfile(m, src.extractfile(m) if m.isreg() else None)
                n += 1
    except (tarfile.TarError, EOFError) as e:
        raise RktError(f"export: the guest's tar is not readable: {e}") from e
    if n == 0:
        raise RktError("export: the guest's tar is empty")
    return n


def export_aci(pod: Path, app: str, manifest: bytes, out: Path, work: Path) -> None:
    """Write the app (manifest + its rootfs read from its disk) as an ACI at out."""
    import io

    guest = guest_tar(pod, app, work)
    tmp = out.with_name(out.name + ".tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as dst:
            info = tarfile.TarInfo("manifest")
            info.size = len(manifest)
            info.mode = 0o644
            dst.addfile(info, io.BytesIO(manifest))
            n = copy_members(guest, dst)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        guest.unlink(missing_ok=True)
    log.debug(f"export: {n} members of app {app}'s disk in {out}")
