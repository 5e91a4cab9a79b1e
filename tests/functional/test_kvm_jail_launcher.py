"""rkt-jail, the hypervisor's launcher (rkt-jail.c, jail.py), run as the kvm runner runs
it (the first process of a new PID namespace) with a static busybox standing in for
QEMU: what the jailed program sees and may do, on a real kernel, without a VM."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyrkt.linux import ns
from pyrkt.stage1.kvm import assets, jail
from pyrkt.stage1.kvm.jail import Access

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        subprocess.run(["sh", "-c", "command -v gcc"], capture_output=True).returncode != 0,
        reason="needs gcc (scripts/setup.sh installs it)",
    ),
]

BUSYBOX = Path("/bin/busybox")  # static (busybox-static): needs no library in the jail


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return assets.cached_program(assets.JAIL, tmp_path_factory.mktemp("cache"))


@pytest.fixture
def pod(tmp_path: Path) -> Path:
    """A pod-like folder: rw/ (shared read-write), ro/ (read-only) with a file, and a
    file the jail must not show."""
    (tmp_path / "pod/rw").mkdir(parents=True)
    (tmp_path / "pod/ro").mkdir()
    (tmp_path / "pod/ro/f").write_text("ro\n")
    (tmp_path / "pod/pid").write_text("secret\n")
    return tmp_path / "pod"


def start(launcher: Path, pod: Path, script: str, *, extra: tuple[str, ...] = (),
          pdeathsig: bool = False, files: tuple[tuple[Path, Access], ...] = ()
          ) -> subprocess.Popen[str]:
    j = jail.Jail(files=((BUSYBOX, Access.EXEC), (pod / "rw", Access.RW),
                         (pod / "ro", Access.RO), (Path("/dev/null"), Access.DEV), *files),
                  chdir=pod, die_with_parent=pdeathsig)
    fd = os.memfd_create("filter", os.MFD_CLOEXEC)
    os.write(fd, jail.setid_filter())
    os.lseek(fd, 0, os.SEEK_SET)
    argv = jail.launcher_argv(launcher, j, [str(BUSYBOX), "sh", "-c", script], fd)
    if extra:
        argv[1:1] = list(extra)
    try:
        with ns.children_in_new_pid_namespace():
            return subprocess.Popen(argv, cwd=pod, text=True, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, pass_fds=[fd],
                                    env={"PATH": "/nonexistent"})
    finally:
        os.close(fd)


def run(launcher: Path, pod: Path, script: str,
        files: tuple[tuple[Path, Access], ...] = ()) -> tuple[int, str, str]:
    p = start(launcher, pod, script, files=files)
    out, err = p.communicate(timeout=60)
    return p.returncode, out, err


BB = "/bin/busybox"


def test_the_program_sees_only_its_files_as_init_of_its_own_namespaces(
        launcher: Path, pod: Path) -> None:
    script = f"""
echo "pid $$"
{BB} ls -A /
{BB} find {pod} | {BB} sort
{BB} grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status
{BB} ls /proc
{BB} cat /proc/self/net/dev | {BB} tail -n +3 | {BB} cut -d: -f1
"""
    rc, out, err = run(launcher, pod, script)
    assert rc == 0, err
    lines = [x.strip() for x in out.splitlines()]
    assert lines[0] == "pid 1"
    # The jail's root: /proc and the folders leading to the binds (busybox, /dev/null,
    # the pod's), and a bin -> usr/bin link where the host has one.
    root = lines[1:lines.index(str(pod))]
    assert {"dev", "proc", pod.parts[1], "bin"} <= set(root) <= {"dev", "proc", pod.parts[1],
                                                                 "bin", "usr"}, out
    listed = lines[lines.index(str(pod)):lines.index("CapInh:\t0000000000000000")]
    assert listed == [str(pod), str(pod / "ro"), str(pod / "ro/f"), str(pod / "rw")], out
    assert "CapPrm:\t000000000000000b" in out.splitlines()  # CHOWN, DAC_OVERRIDE, FOWNER
    assert "CapEff:\t000000000000000b" in out.splitlines()
    assert "CapBnd:\t000000000000000b" in out.splitlines()
    assert "CapAmb:\t0000000000000000" in out.splitlines()
    assert "NoNewPrivs:\t1" in out.splitlines()
    assert "Seccomp:\t2" in out.splitlines()
    # Its own PID namespace (itself and the `ls`), its own network namespace (only lo).
    procs = lines[lines.index("Seccomp:\t2") + 1:-1]
    assert "1" in procs and "self" in procs and len([p for p in procs if p.isdigit()]) == 2
    assert lines[-1] == "lo"


# Gives a file a capability (security.capability, v2: CAP_SYS_ADMIN permitted and
# effective), as `setcap cap_sys_admin+ep FILE` does; busybox has no setcap.
SETCAP_C = r"""
#include <stdio.h>
#include <sys/xattr.h>
int main(int argc, char **argv) {
    unsigned int cap[5] = {0x02000001, 1u << 21, 0, 0, 0};
    if (argc != 2 || setxattr(argv[1], "security.capability", cap, sizeof cap, 0) != 0) {
        perror("setxattr");
        return 1;
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def setcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("setcap")
    (d / "setcap.c").write_text(SETCAP_C)
    subprocess.run(["gcc", "-O1", "-static", "-o", str(d / "setcap"), str(d / "setcap.c")],
                   check=True)
    return d / "setcap"


def test_writes_setuid_bits_device_nodes_caps_and_exec_are_refused(
        launcher: Path, pod: Path, setcap: Path) -> None:
    script = f"""
t() {{ "$@" 2>/dev/null && echo "$* ok" || echo "$* refused"; }}
t {BB} touch /new
t {BB} touch ro/new
t {BB} cp {BB} rw/sh
t {BB} chmod 755 rw/sh
t {BB} chmod 4755 rw/sh
t {BB} chmod 2755 rw/sh
t {BB} chmod g+s rw
t {BB} mknod rw/null c 1 3
t {BB} mknod rw/fifo p
t {BB} install -m 4755 {BB} rw/installed
t rw/sh true
t {setcap} rw/sh
t {BB} sh -c 'echo x > /dev/null'
"""
    rc, out, err = run(launcher, pod, script, files=((setcap, Access.EXEC),))
    assert rc == 0, err
    bb = BB
    assert out.splitlines() == [
        f"{bb} touch /new refused",  # the jail's root is read-only
        f"{bb} touch ro/new refused",
        f"{bb} cp {bb} rw/sh ok",
        f"{bb} chmod 755 rw/sh ok",
        f"{bb} chmod 4755 rw/sh refused",  # the setid filter
        f"{bb} chmod 2755 rw/sh refused",
        f"{bb} chmod g+s rw refused",
        f"{bb} mknod rw/null c 1 3 refused",  # no CAP_MKNOD
        f"{bb} mknod rw/fifo p ok",  # a FIFO needs no privilege
        f"{bb} install -m 4755 {bb} rw/installed refused",
        "rw/sh true refused",  # rw binds are noexec
        f"{setcap} rw/sh refused",  # no CAP_SETFCAP
        f"{bb} sh -c echo x > /dev/null ok",
    ], out
    for p in (pod / "rw").iterdir():
        assert "security.capability" not in os.listxattr(p, follow_symlinks=False), p
        st = p.lstat()
        assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID), p
        assert not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)), p
    assert not (pod / "rw").stat().st_mode & stat.S_ISGID
    assert not (pod / "new").exists() and not (pod / "ro/new").exists()


def test_a_missing_file_fails_the_launch_before_anything_runs(launcher: Path,
                                                             pod: Path) -> None:
    p = start(launcher, pod, f"{BB} touch rw/ran", extra=("--ro", str(pod / "absent")))
    _, err = p.communicate(timeout=60)
    assert p.returncode == 254
    assert err.startswith(f"rkt-jail: stat {pod / 'absent'}: No such file or directory")
    assert not (pod / "rw/ran").exists()


PARENT = """
import subprocess, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from test_kvm_jail_launcher import start
p = start(Path(sys.argv[2]), Path(sys.argv[3]), "/bin/busybox sleep 600", pdeathsig=True)
print(p.pid, flush=True)
time.sleep(600)
"""


def test_the_program_dies_with_its_parent(launcher: Path, pod: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(Path(__file__).parent),
                               str(launcher), str(pod)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 60
        while Path(f"/proc/{child}/exe").resolve() != BUSYBOX.resolve():
            assert time.monotonic() < deadline, "the jailed program never started"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 60
    while not gone(child):
        assert time.monotonic() < deadline, "the jailed program outlived its parent"
        time.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] in "ZX"
    except FileNotFoundError:
        return True
