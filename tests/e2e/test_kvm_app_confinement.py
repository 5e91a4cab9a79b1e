"""Apps cannot leave their root in the guest (issue 9, point 2), under QEMU: a guest app
with rkt's default capabilities (CAP_SYS_CHROOT among them) runs the classic chroot
escape (mkdir x; chroot x; chdir .. as often as it likes; chroot .) and then goes for
the pod's control share, the stage1 share with the exit codes, and another app's rootfs:
it finds nothing, and nothing it tried shows on the host; with rkt's CAP_MKNOD it makes
nodes of the guest's disks (the other app's rootfs, with rootfs=block) and of the pod's
virtio-serial ports and opens none. `rkt enter` lands in the app's own namespace (its
/dev/shm, not the guest's). Both kinds of rootfs: 9p shares and disks."""

from __future__ import annotations

import shlex
from pathlib import Path

import kvm_helpers as kh
import pytest
import test_kvm_rkt as base
from test_kvm_rkt import Rkt

from support.cprog import static_program

pytestmark = [pytest.mark.qemu, pytest.mark.root]

stage1 = base.stage1  # the module fixtures of test_kvm_rkt
accel_env = base.accel_env
rkt = base.rkt

CAP_SYS_CHROOT = 18

# `escape CMD...`: the chroot escape, then CMD at whatever root it reached.
ESCAPE_C = r"""
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 2 || chdir("/tmp") != 0) { perror("chdir /tmp"); return 2; }
    mkdir("escape-dir", 0755);
    if (chroot("escape-dir") != 0) { perror("chroot escape-dir"); return 2; }
    for (int i = 0; i < 256; i++)
        if (chdir("..") != 0) { perror("chdir .."); return 2; }
    if (chroot(".") != 0) { perror("chroot ."); return 2; }
    puts("escape: done");
    fflush(stdout);
    execv(argv[1], argv + 1);
    perror("exec");
    return 2;
}
"""

# What the attacker tries once it escaped; each line says what it found.
ATTACK = r"""
grep CapEff /proc/self/status
try() { if eval "$2" >/dev/null 2>&1; then echo "$1: reached"; else echo "$1: nothing"; fi; }
try read-pod-script 'cat /ctl/pod.sh'
try write-pod-script 'echo "echo PW""NED" >> /ctl/pod.sh'
try list-status 'ls /stage1/rkt/status/victim'
try forge-status 'echo 9 > /stage1/rkt/status/victim'
try read-victim 'cat /stage1/opt/stage2/victim/rootfs/tmp/victim-file'
try write-victim 'echo pwned > /stage1/opt/stage2/victim/rootfs/tmp/pwned'
try init-root 'ls /proc/1/root/ctl'
try initramfs 'ls /init.sh'
# CAP_MKNOD: a node of every disk of the guest (the victim's rootfs among them) and of
# every virtio-serial port, on /dev (a tmpfs) and on the rootfs; none may open.
try raw-disk '(for b in /sys/block/vd*; do IFS=: read -r ma mi <"$b/dev" || exit 1
  for d in /dev /tmp; do mknod "$d/x$mi" b "$ma" "$mi" && head -c 1 "$d/x$mi" && exit 0
  done; done; exit 1)'
try serial-port '(for p in /sys/class/virtio-ports/*; do IFS=: read -r ma mi <"$p/dev" || exit 1
  for d in /dev /tmp; do mknod "$d/p$mi" c "$ma" "$mi" && (exec 7<>"$d/p$mi") && exit 0
  done; done; exit 1)'
"""
FOUND = ("read-pod-script", "write-pod-script", "list-status", "forge-status", "read-victim",
         "write-victim", "init-root", "initramfs", "raw-disk", "serial-port")
ROOTFS = pytest.mark.parametrize("kind", ["9p", "block"])


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox ACI with /bin/escape (static C)."""
    work = tmp_path_factory.mktemp("aci")
    root = work / "rootfs"
    kh.busybox_rootfs(root)
    static_program(ESCAPE_C, root / "bin/escape")
    return kh.pack_aci(work)


@ROOTFS
def test_a_chroot_escape_finds_nothing_of_the_pod(rkt: Rkt, image: Path, tmp_path: Path,
                                                  kind: str) -> None:
    uuid_file = tmp_path / "uuid"
    # The victim exits 0 first (the init records it; a failure would stop the pod), then
    # the attacker goes.
    r = rkt.run(f"--kvm-rootfs={kind}", f"--uuid-file-save={uuid_file}",
                str(image), "--name=victim", "--exec", "/bin/sh", "--", "-c",
                "echo secret > /tmp/victim-file; exit 0", "---",
                str(image), "--name=attacker", "--exec", "/bin/sh", "--", "-c",
                f"sleep 3; exec /bin/escape /bin/sh -c {shlex.quote(ATTACK)}")
    out = r.stdout.splitlines()
    assert "escape: done" in out, r.stdout + r.stderr  # chroot itself was allowed
    cap_eff = int(next(x for x in out if x.startswith("CapEff:")).split()[1], 16)
    assert cap_eff & (1 << CAP_SYS_CHROOT)  # rkt's default capabilities
    for what in FOUND:
        assert f"{what}: nothing" in out, r.stdout
    # Nothing of it reached the host: the pod script, the victim's exit code and rootfs.
    uuid = uuid_file.read_text().strip()
    pod = next(p for p in kh.pod_dirs(rkt.dir) if p.name == uuid)
    assert "PWNED" not in (pod / "kvm/ctl/pod.sh").read_text()  # written as PW""NED
    assert r.returncode == 0, r.stderr  # the victim's own code, not a forged 9
    st = rkt("status", uuid)
    assert "app-victim=0" in st.stdout and "app-attacker=0" in st.stdout, st.stdout
    assert not list(pod.rglob("pwned"))


@ROOTFS
def test_enter_lands_in_the_apps_namespace(rkt: Rkt, image: Path, tmp_path: Path,
                                           kind: str) -> None:
    uuid_file = tmp_path / "uuid"
    rkt.start(f"--kvm-rootfs={kind}", f"--uuid-file-save={uuid_file}", str(image),
              "--exec", "/bin/sh", "--", "-c",
              "echo from-app > /dev/shm/marker; echo in-rootfs > /tmp/marker; exec sleep 600")
    uuid = rkt.wait_running(uuid_file)
    # /dev/shm is the app's own tmpfs: seen only from inside its namespace.
    e = rkt("enter", uuid, "/bin/sh", "-c",
            "cat /tmp/marker /dev/shm/marker; ls /dev; awk '$2 == \"/\" {print $3}' /proc/mounts; "
            "app=$(busybox pidof sleep); "
            "[ $(busybox readlink /proc/$app/ns/mnt) = $(busybox readlink /proc/self/ns/mnt) ]"
            " && echo same-namespace")
    assert e.returncode == 0, e.stdout + e.stderr
    lines = e.stdout.splitlines()
    assert lines[:2] == ["in-rootfs", "from-app"]
    assert ("ext4" if kind == "block" else "9p") in lines  # its root: the disk or the share
    assert "same-namespace" in lines
    assert not any(x.startswith("vport") for x in lines)  # the guest's ports: not in /dev
    # An entered command has the app's capabilities: its chroot escape finds nothing too.
    e = rkt("enter", uuid, "/bin/escape", "/bin/sh", "-c", ATTACK)
    assert e.returncode == 0, e.stdout + e.stderr
    for what in FOUND:
        assert f"{what}: nothing" in e.stdout.splitlines(), e.stdout
    assert rkt("stop", "--force", uuid).returncode == 0


def test_the_apps_memory_and_cpu_limits_are_enforced_in_the_guest(rkt: Rkt,
                                                                 image: Path) -> None:
    """--memory: an app allocating more is killed by the guest's OOM killer in its own
    cgroup (memory.max), the pod's other processes untouched; --cpu: a busy app is
    throttled by its CFS quota (cpu.max: the tailored guest kernel's CFS bandwidth
    control), as its cgroup's counters say (no timing measured)."""
    mem = ("dd if=/dev/zero of=/dev/null bs=48M count=1 2>/dev/null; echo dd=$?; "
           "grep oom_kill /sys/fs/cgroup/memory.events")
    cpu = ("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; "
           "grep nr_throttled /sys/fs/cgroup/cpu.stat")
    r = rkt.run(str(image), "--name=mem", "--memory=16Mi", "--exec", "/bin/sh", "--", "-c", mem,
                "---", str(image), "--name=cpu", "--cpu=100m", "--exec", "/bin/sh", "--", "-c",
                cpu)
    assert r.returncode == 0, r.stderr
    out = dict(line.split(maxsplit=1) for line in r.stdout.replace("=", " ").splitlines())
    assert out["dd"] == "137"  # SIGKILL: the OOM killer
    assert int(out["oom_kill"]) >= 1
    assert int(out["nr_throttled"]) > 0
