"""rkt's KVM gaps, end to end under QEMU: the VM size set for one pod by annotations
(rkt #1926), the apps' output kept in the pod folder after exit (rkt #2664), and the
file operations package managers rely on, over virtio-9p (rkt #1917)."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import time
from pathlib import Path

import kvm_helpers as kh
import pytest
import test_kvm_rkt as base
from test_kvm_rkt import HOST_CPUS, Rkt, assert_memory, meminfo_kb

from support.cprog import static_program

pytestmark = [pytest.mark.qemu, pytest.mark.root]

stage1 = base.stage1  # the module fixtures of test_kvm_rkt
accel_env = base.accel_env


rkt = base.rkt

ANN_MEMORY = "coreos.com/rkt/stage1/kvm/memory"
ANN_CPUS = "coreos.com/rkt/stage1/kvm/cpus"


# A writable shared mapping written, synced, then read back with pread (what databases and
# apt's cache do); busybox has no tool for it.
MMAP_RW_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char back[8] = {0};
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, 4096) != 0) { perror("open"); return 1; }
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 2; }
    memcpy(p, "mapped", 6);
    if (msync(p, 4096, MS_SYNC) != 0) { perror("msync"); return 3; }
    if (munmap(p, 4096) != 0 || pread(fd, back, 6, 0) != 6) { perror("pread"); return 4; }
    puts(back);
    return 0;
}
"""


# A unix socket server (`usock serve PATH`: answers one line) and client (`usock send PATH
# MSG`); busybox's nc has no unix sockets.
USOCK_C = r"""
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    char buf[64] = {0};
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    strncpy(a.sun_path, argv[2], sizeof a.sun_path - 1);
    if (strcmp(argv[1], "serve") == 0) {
        if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); return 1; }
        if (listen(s, 1) != 0) { perror("listen"); return 2; }
        int c = accept(s, NULL, NULL);
        ssize_t n = read(c, buf, sizeof buf - 1);
        if (n <= 0) { perror("read"); return 3; }
        dprintf(c, "reply %s", buf);
        close(c);
        return 0;
    }
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 4; }
    dprintf(s, "%s", argv[3]);
    ssize_t n = read(s, buf, sizeof buf - 1);
    if (n <= 0) { perror("read"); return 5; }
    puts(buf);
    return 0;
}
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox ACI with every applet, util-linux's flock with its libraries and mmap-rw."""
    work = tmp_path_factory.mktemp("aci")
    root = work / "rootfs"
    kh.busybox_rootfs(root)
    kh.every_applet(root)
    for f in ("/usr/bin/flock", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"):
        dest = root / f.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)
    static_program(MMAP_RW_C, root / "bin/mmap-rw")
    static_program(USOCK_C, root / "bin/usock")
    # A /run with content (as in Debian's images: /run/lock), owned by an app user.
    (root / "run" / "app").mkdir(parents=True)
    os.chown(root / "run" / "app", 12, 12)
    (root / "run" / "app").chmod(0o750)
    return kh.pack_aci(work)


def test_vm_size_from_annotations_and_logs_kept_after_exit(rkt: Rkt, image: Path,
                                                          tmp_path: Path) -> None:
    uuid_file = tmp_path / "uuid"
    cpus = 1 if HOST_CPUS > 1 else 2  # not what the rule gives (all host CPUs)
    r = rkt.run(f"--uuid-file-save={uuid_file}", f"--annotation={ANN_MEMORY}=320Mi",
                f"--annotation={ANN_CPUS}={min(cpus, HOST_CPUS)}", str(image),
                "--exec", "/bin/sh", "--", "-c",
                "nproc; grep MemTotal /proc/meminfo; echo to-stdout; echo to-stderr >&2; exit 3",
                debug=True)
    assert r.returncode == 3, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == str(min(cpus, HOST_CPUS))
    assert_memory(meminfo_kb(r.stdout), 320)
    assert f"VM size {min(cpus, HOST_CPUS)} vCPU(s), 320 MiB" in r.stderr
    assert f"set by pod annotation(s) {ANN_MEMORY}, {ANN_CPUS}" in r.stderr
    # The apps' output stays in the pod folder after exit: exactly what rkt run printed
    # on stdout; on stderr, the app's line without the --debug kernel messages.
    uuid = uuid_file.read_text().strip()
    pod = next(p for p in kh.pod_dirs(rkt.dir) if p.name == uuid)
    assert (pod / "logs/stdout.log").read_text() == r.stdout
    assert (pod / "logs/stderr.log").read_text() == "to-stderr\n"
    assert "to-stderr" in r.stderr.splitlines()
    st = rkt("status", uuid)
    assert "state=exited" in st.stdout, st.stdout
    rm = rkt("rm", uuid)
    assert rm.returncode == 0, rm.stderr
    assert not pod.exists()


def test_vm_size_annotation_out_of_range_is_refused(rkt: Rkt, image: Path) -> None:
    r = rkt.run(f"--annotation={ANN_CPUS}={HOST_CPUS + 1}", str(image))
    assert r.returncode == 254, r.stdout
    assert f"annotation {ANN_CPUS}='{HOST_CPUS + 1}'" in r.stderr
    assert f"from 1 to {HOST_CPUS}" in r.stderr
    r = rkt.run(f"--annotation={ANN_MEMORY}=1Ti", str(image))
    assert r.returncode == 254, r.stdout
    assert f"annotation {ANN_MEMORY}='1Ti': 1048576 MiB is more than the host has" in r.stderr
    assert "qemu-system" not in r.stderr  # refused before QEMU, not by it
    assert not kh.qemu_pids_for(str(rkt.dir))


# Each check prints "ok NAME" or "FAIL NAME: what it saw"; run in a folder of the app's
# rootfs (the stage1 share), a host volume and an empty volume. A setuid or setgid bit
# is refused on every share (QEMU's jail, docs/security.md).
POSIX_OPS = r"""
cd "$1" || exit 9
check() { if [ "$2" = "$3" ]; then echo "ok $1"; else echo "FAIL $1: got [$2] want [$3]"; fi; }
echo kept > unl; exec 3<unl; rm unl; check open-unlink-read "$(cat <&3)" kept; exec 3<&-
exec 4>unlw 6<unlw; rm unlw; echo w >&4
check open-unlink-write "$(cat <&6)/$(stat -L -c %s /proc/$$/fd/4)" w/2; exec 4>&- 6<&-
echo old > ren; echo new > ren.new; exec 5<ren; mv ren.new ren
check rename-over-open "$(cat ren)/$(cat <&5)" new/old; exec 5<&-
echo x > hl; ln hl hl2; check hardlink-count "$(stat -c %h hl)" 2
echo y >> hl2; check hardlink-shared "$(cat hl | tr '\n' ' ')" "x y "
rm hl; check hardlink-after-unlink "$(stat -c %h hl2)/$(cat hl2 | wc -l)" 1/2
echo m > mode; chmod 750 mode; check chmod "$(stat -c %a mode)" 750
chmod 4750 mode 2>/dev/null; check chmod-setuid-refused "$?/$(stat -c %a mode)" 1/750
chown 12:34 mode; check chown "$(stat -c %u:%g mode)" 12:34
ln -s target sym; check symlink "$(readlink sym)" target
chown -h 5:6 sym; check lchown "$(stat -c %u:%g sym)/$(stat -c %u target 2>&1 | wc -l)" 5:6/1
touch lk; flock -n lk -c 'flock -n lk -c true'; check flock-conflict $? 1
flock -n lk -c true; check flock-free $? 0
dd if=/dev/zero of=synced bs=4k count=4 conv=fsync 2>/dev/null; check fsync $? 0
sync synced; check sync-file $? 0
dd if=/dev/zero of=big bs=1M count=8 2>/dev/null
dd if=/dev/zero bs=1M count=1 2>/dev/null >> big; check append "$(stat -c %s big)" 9437184
dd if=/dev/zero of=sparse bs=1 count=1 seek=5G 2>/dev/null
check large-offset "$(stat -c %s sparse)" 5368709121
touch -d '2001-02-03 04:05:06' ut; check utime "$(stat -c %Y ut)" \
  "$(date -d '2001-02-03 04:05:06' +%s)"
mkdir -p dd/sub; echo z > dd/sub/f; mv dd dd2; check rename-dir "$(cat dd2/sub/f)" z
rm -r dd2; check rm-r "$(ls -A | grep -c dd)" 0
echo t > tr; : > tr; check truncate "$(stat -c %s tr)" 0
check mmap-shared-write "$(mmap-rw mm 2>&1)/$(cat mm | tr -d '\0')" mapped/mapped
echo ok-end
"""


# FIFOs: in /dev/shm (a tmpfs in the guest); QEMU 7.2 cannot make one on a 9p share.
FIFOS = """cd /dev/shm; mkfifo fifo; timeout 60 sh -c 'echo through > fifo' &
echo "shm-fifo $(timeout 60 cat fifo)/$(stat -c %F fifo)"; wait
mkfifo /host/fifo 2>&1; echo "9p-fifo $?"
"""


def test_package_manager_file_operations_over_9p(rkt: Rkt, image: Path,
                                                tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    r = rkt.run("--kvm-rootfs=9p", "--volume=host,kind=host,source=" + str(host),
                "--volume=empty,kind=empty",
                str(image), "--mount=volume=host,target=/host",
                "--mount=volume=empty,target=/empty", "--exec", "/bin/sh", "--", "-c",
                'mkdir -p /var/tmp/ops; for d in /var/tmp/ops /host /empty; do '
                'echo "== $d"; sh -c "$0" ops "$d"; done; ' + FIFOS, POSIX_OPS)
    out = r.stdout
    assert r.returncode == 0, r.stderr
    assert out.count("ok-end") == 3, out
    failed = [x for x in out.splitlines() if x.startswith("FAIL")]
    assert not failed, out
    oks = [x for x in out.splitlines() if x.startswith("ok ")]
    assert len(oks) == 3 * POSIX_OPS.count("check "), out
    assert (host / "big").stat().st_size == 9437184
    assert "shm-fifo through/fifo" in out.splitlines()
    # The documented gap: mkfifo on a 9p share fails (ENXIO), and leaves nothing behind.
    assert "mkfifo: /host/fifo: No such device or address" in out.splitlines()
    assert "9p-fifo 1" in out.splitlines()
    assert not os.path.lexists(host / "fifo")
    assert os.stat(host / "mode").st_uid == 12


@pytest.fixture(scope="module")
def image_empty_run(image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same image with an empty /run (the guest's tmpfs then comes from the fstab)."""
    out = tmp_path_factory.mktemp("aci-run") / "busybox-empty-run.aci"
    with tarfile.open(image) as src, tarfile.open(out, "w") as dst:
        for m in src.getmembers():
            if not m.name.startswith("rootfs/run/"):
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    return out


@pytest.mark.parametrize("empty", [False, True], ids=["run-with-content", "empty-run"])
def test_unix_sockets_and_fifos_in_run(rkt: Rkt, image: Path, image_empty_run: Path,
                                       empty: bool) -> None:
    """/run is a tmpfs in the guest holding a copy of the image's /run: QEMU 7.2's 9p
    cannot make a socket or a FIFO on the app's rootfs (docs/kvm.md)."""
    d = "/run" if empty else "/run/app"
    script = (f"stat -c '%a %u %g' {d}; usock serve {d}/sock & "
              f"timeout 60 sh -c 'until [ -S {d}/sock ]; do sleep 0.1; done'; "
              f"usock send {d}/sock hello; "
              "wait $! && echo served; mkfifo /run/fifo; "
              "timeout 60 sh -c 'echo through > /run/fifo' & "
              "echo \"fifo $(timeout 60 cat /run/fifo)/$(stat -c %F /run/fifo)\"; wait $!")
    r = rkt.run("--kvm-rootfs=9p", str(image_empty_run if empty else image), "--exec",
                "/bin/sh", "--", "-c", script)
    assert r.returncode == 0, r.stderr
    owner = "755 0 0" if empty else "750 12 12"
    assert r.stdout.splitlines() == [owner, "reply hello", "served",
                                     "fifo through/fifo"], r.stdout
    assert "broken or compromised client" not in r.stderr
    # What the pod wrote (its overlay's upper folders on the host): nothing in /run.
    uppers = [u for pod in kh.pod_dirs(rkt.dir) for u in pod.glob("overlay/*/upper")]
    assert uppers, kh.all_diagnostics(rkt.dir)
    assert not [u for u in uppers if (u / "run").exists()]


def wait_for(path: Path, rkt: Rkt, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared\n" + kh.all_diagnostics(rkt.dir))
        time.sleep(0.2)


def test_host_changes_to_a_writable_volume_are_seen_in_the_running_pod(
        rkt: Rkt, image: Path, tmp_path: Path) -> None:
    """cache=mmap on writable volumes keeps reads and stat coherent with the host."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "data").write_text("v1\n")
    (host / "gone").write_text("x\n")
    script = ("until [ -e /h/ready ]; do sleep 0.1; done; "
              "cat /h/data; stat -c %s /h/data; [ -e /h/gone ] && echo gone-present; "
              "touch /h/seen; until [ -e /h/go ]; do sleep 0.1; done; "
              "cat /h/data; stat -c %s /h/data; [ -e /h/gone ] || echo gone-absent")
    p = rkt.start(f"--volume=h,kind=host,source={host}", str(image),
                  "--mount=volume=h,target=/h", "--exec", "/bin/sh", "--", "-c", script)
    (host / "ready").touch()
    wait_for(host / "seen", rkt)
    (host / "data").write_text("version2\n")
    (host / "gone").unlink()
    (host / "go").touch()
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert out.splitlines() == ["v1", "3", "gone-present", "version2", "9", "gone-absent"], out


def test_vm_size_from_a_pod_manifest(rkt: Rkt, image: Path, tmp_path: Path) -> None:
    fetched = rkt("fetch", "--insecure-options=image", str(image))
    assert fetched.returncode == 0, fetched.stderr
    image_id = fetched.stdout.strip().splitlines()[-1]
    manifest = {
        "acVersion": "0.8.11", "acKind": "PodManifest",
        "apps": [{"name": "probe", "image": {"id": image_id},
                  "app": {"exec": ["/bin/sh", "-c", "nproc; grep MemTotal /proc/meminfo"],
                          "user": "0", "group": "0"}}],
        "annotations": [{"name": ANN_MEMORY, "value": "200Mi"},
                        {"name": ANN_CPUS, "value": "1"}],
    }
    path = tmp_path / "pod.json"
    path.write_text(json.dumps(manifest))
    r = rkt.run(f"--pod-manifest={path}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "1"
    assert_memory(meminfo_kb(r.stdout), 200)
