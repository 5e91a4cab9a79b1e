"""QEMU confined (stage1/kvm/jail.py, docs/security.md), end to end: what a running
pod's QEMU is allowed, read from the host's /proc, and a hostile guest that tries to
leave a setuid program or a device node in a host volume."""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import kvm_helpers as kh
import pytest
import test_kvm_rkt as base
from test_kvm_rkt import Rkt

from pyrkt.image import fsimage
from pyrkt.linux import cgroup
from pyrkt.stage1 import contract
from pyrkt.stage1.kvm.templates import shape, store

pytestmark = [pytest.mark.qemu, pytest.mark.root]

stage1 = base.stage1  # the module fixtures of test_kvm_rkt
accel_env = base.accel_env
rkt = base.rkt

# The documented capability set (docs/security.md): CAP_CHOWN (0), CAP_DAC_OVERRIDE (1),
# CAP_FOWNER (3).
CAPS = "000000000000000b"
# The documented memory limit: the VM's memory, plus 160 MiB, plus 1/16 of it.
VM_MIB = 256  # one app without a memory limit: 128 + 128
LIMIT = (VM_MIB + 160 + VM_MIB // 16) << 20
# Where the host's QEMU keeps what it opens (the jail's mount points besides the pod's).
QEMU_FILES = ("/usr/bin/qemu-system-x86_64", "/usr/lib/", "/usr/share/qemu",
              "/usr/share/seabios", "/usr/lib/ipxe/qemu", "/etc/ld.so.cache")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Busybox with every applet, and a setuid-root copy of it (/bin/suid, 4755)."""
    work = tmp_path_factory.mktemp("aci-jail")
    root = work / "rootfs"
    kh.busybox_rootfs(root)
    kh.every_applet(root)
    shutil.copy(kh.BUSYBOX, root / "bin/suid")
    (root / "bin/suid").chmod(0o4755)
    return kh.pack_aci(work)


def running_pod(rkt: Rkt, tmp_path: Path, *args: str) -> tuple[Path, int]:
    """Start a pod (sleeping) with the given arguments; its folder and QEMU's pid."""
    uuid_file = tmp_path / "uuid"
    rkt.start(f"--uuid-file-save={uuid_file}", *args)
    uuid = rkt.wait_running(uuid_file)
    pod = next(p for p in kh.pod_dirs(rkt.dir) if p.name == uuid)
    return pod, int((pod / "pid").read_text())


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (x.partition(":") for x in lines)}


def memory_limit_of(pid: int) -> int:
    """The memory limit of the cgroup the process is in (v1 memory or v2)."""
    layout = cgroup.detect()
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if "memory" in ctrls.split(",") and "memory" in layout.v1:
            return int((layout.v1["memory"] / path.lstrip("/") / "memory.limit_in_bytes")
                       .read_text())
        if ctrls == "" and not layout.v1 and layout.v2 is not None:
            return int((layout.v2 / path.lstrip("/") / "memory.max").read_text())
    raise AssertionError(f"no memory cgroup for {pid}")


def test_qemu_of_a_running_pod_is_confined(rkt: Rkt, image: Path, tmp_path: Path) -> None:
    vol, rovol = tmp_path / "vol", tmp_path / "rovol"
    vol.mkdir()
    rovol.mkdir()
    pod, pid = running_pod(
        rkt, tmp_path, f"--volume=v,kind=host,source={vol}",
        f"--volume=r,kind=host,source={rovol},readOnly=true", str(image),
        "--mount=volume=v,target=/v", "--mount=volume=r,target=/r",
        "--exec", "/bin/sleep", "--", "3600")
    assert Path(f"/proc/{pid}/exe").resolve().name == "qemu-system-x86_64"
    st = status(pid)
    assert (st["Seccomp"], st["NoNewPrivs"]) == ("2", "1"), st
    assert (st["CapEff"], st["CapPrm"], st["CapBnd"]) == (CAPS, CAPS, CAPS), st
    assert (st["CapInh"], st["CapAmb"]) == ("0" * 16, "0" * 16), st
    assert st["NSpid"].split()[-1] == "1", st  # the init of its own PID namespace
    for ns in ("mnt", "pid", "net", "ipc", "uts", "cgroup"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    # --net=none: a network namespace with loopback only.
    devs = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    assert [d.split(":")[0].strip() for d in devs] == ["lo"]
    assert memory_limit_of(pid) == LIMIT

    # Its mounts: the pod's kvm/, logs/ and stage1 rootfs (with the apps' in it), the
    # volumes, its own files and two device nodes, on a read-only root.
    mounts: dict[str, set[str]] = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        mounts[fields[4]] = set(fields[5].split(","))
    shares = {str(pod / "kvm"), str(pod / "logs"), str(vol), str(rovol)}
    rootfs = str(pod / "stage1/rootfs")
    # The kernel and initramfs, read-only, from the stage1 image's own tree (the pod's
    # copy of it is the guest's to write).
    image_rootfs = contract.stage1_image_rootfs(pod)
    boot = {str(image_rootfs / "kvm" / f) for f in ("vmlinuz", "initrd.img")}
    # The apps' disks (docs/kvm.md "Root filesystems on disks"): the image's ext4 from
    # the store, read-only; the pod's layer (in its kvm/), booted or hot-plugged after a
    # restore alike.
    disks = {str(p) for p in rkt.dir.glob(f"cas/trees/*/{fsimage.NAME}")}
    layers = {str(p) for p in (pod / "kvm" / "disks").glob("*.qcow2")}
    assert disks and layers
    allowed = {"/", "/proc", "/dev/null", "/dev/urandom"} | shares | {rootfs} | disks | layers
    # A pod restored from a VM template (stage1/kvm/templates/) sees instead that
    # template's RAM file (read-write: QEMU 7.2 maps a file privately only so) and the
    # head of its kernel (read-only); its state came as an fd.
    ram = [m for m in mounts if m.startswith(str(store.RAM_ROOT) + "/")]
    head = [m for m in mounts if m.endswith("/" + shape.KERNEL_HEAD)]
    if "-incoming" in (pod / "kvm/cmdline").read_text():
        assert len(ram) == len(head) == 1, mounts
        assert {"rw", "nosuid", "nodev", "noexec"} <= mounts[ram[0]]
        assert {"ro", "nosuid", "nodev", "noexec"} <= mounts[head[0]]
        allowed |= {ram[0], head[0]}
    else:
        allowed |= boot
    for mp in mounts:
        assert (mp in allowed or mp.startswith(rootfs + "/")
                or mp.startswith(QEMU_FILES)), f"{mp} is visible to QEMU"
    assert shares | {rootfs, "/", "/proc"} <= set(mounts)
    assert {"ro", "nosuid", "nodev", "noexec"} <= mounts["/"]
    assert {"rw", "nosuid", "nodev", "noexec"} <= mounts[str(vol)]
    assert {"ro", "nosuid", "nodev"} <= mounts[str(rovol)]
    for d in disks:
        assert {"ro", "nosuid", "nodev", "noexec"} <= mounts[d]
    # Nothing else of the host or of the pod folder is there (the jail's own root holds
    # only the folders and links leading to the mounts).
    jail_root = Path(f"/proc/{pid}/root")
    for p in ("etc/passwd", "root", "home", "var", "sys", "run", "dev/kvm", "bin/sh"):
        assert not os.path.lexists(jail_root / p), p
    for p in ("pid", "pod", "appsinfo", "overlay", "stage1/manifest"):
        assert not os.path.lexists(jail_root / str(pod).lstrip("/") / p), p
    for d, dirs, files in os.walk(jail_root):
        rel = "/" + os.path.relpath(d, jail_root).removeprefix(".")
        dirs[:] = [x for x in dirs if os.path.join(rel, x) not in mounts]
        for f in files:
            path = os.path.join(rel, f)
            assert path in mounts or os.path.islink(os.path.join(d, f)), path

    # Stopped and collected: no QEMU, no cgroup left.
    groups = [d for d in cgroup.PodCgroups(pod.name).pod_dirs() if d.is_dir()]
    assert groups
    assert rkt("stop", "--force", pod.name).returncode == 0
    gc = rkt("gc", "--grace-period=0s")
    assert gc.returncode == 0, gc.stderr
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists()
    assert not [d for d in groups if d.exists()]


ATTACK = r"""
t() { "$@" 2>/dev/null && echo "$1 done" || echo "$1 refused"; }
cd /v
cp /bin/busybox sh
t chmod u+s sh
t chmod g+s sh
t chmod 6755 sh
t install -m 4755 /bin/busybox installed
t cp -p /bin/suid suid
t mknod null c 1 3
t mknod disk b 8 0
mkdir d
t chmod g+s d
cp /bin/busybox /tmp/rootfs-sh
t chmod u+s /tmp/rootfs-sh
echo end
"""


def test_guest_setuid_bits_and_device_nodes_are_not_usable_on_the_host(
        rkt: Rkt, image: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    # The apps' rootfs on the 9p share (on a disk, setuid files in the guest's own ext4
    # are allowed, as in a container pod's rootfs: they are not files of the host).
    r = rkt.run("--kvm-rootfs=9p", f"--volume=v,kind=host,source={vol}", str(image),
                "--mount=volume=v,target=/v", "--exec", "/bin/sh", "--", "-c", ATTACK)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "chmod refused", "chmod refused", "chmod refused", "install refused", "cp refused",
        "mknod refused", "mknod refused", "chmod refused", "chmod refused", "end"], r.stdout
    # On the host: no setuid or setgid bit and no device node in the volume, nor in what
    # the pod wrote to its own root (its overlay's upper folders).
    uppers = [u for pod in kh.pod_dirs(rkt.dir) for u in pod.glob("overlay/*/upper")]
    assert uppers
    seen = 0
    for top in (vol, *uppers):
        for d, dirs, files in os.walk(top):
            for name in dirs + files:
                st = os.lstat(os.path.join(d, name))
                seen += 1
                assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID), (d, name, st)
                assert not stat.S_ISCHR(st.st_mode) and not stat.S_ISBLK(st.st_mode), (d, name)
    assert (vol / "sh").is_file() and seen > 3
    # rkt-wait removed the VM's cgroups once QEMU exited (no gc needed).
    uuid = kh.pod_dirs(rkt.dir)[0].name
    assert not [d for d in cgroup.PodCgroups(uuid).pod_dirs() if d.exists()]


def test_a_killed_rkt_run_takes_its_vm_along_and_gc_removes_the_cgroups(
        rkt: Rkt, image: Path, tmp_path: Path) -> None:
    pod, pid = running_pod(rkt, tmp_path, str(image), "--exec", "/bin/sleep", "--", "3600")
    groups = [d for d in cgroup.PodCgroups(pod.name).pod_dirs() if d.is_dir()]
    assert groups
    run = rkt.procs[-1]
    run.kill()  # SIGKILL to `rkt run` (rkt-wait by now)
    run.wait()
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists():  # QEMU gets SIGKILL when its parent dies
        assert time.monotonic() < deadline, "QEMU outlived rkt run"
        time.sleep(0.1)
    gc = rkt("gc", "--grace-period=0s")
    assert gc.returncode == 0, gc.stderr
    assert not [d for d in groups if d.exists()]
    assert not kh.qemu_pids_for(pod.name)
