"""`rkt run` with the kvm stage1 (QEMU), as a user runs it: real VMs (TCG on these
machines). Each test boots as few VMs as it can; a failing test prints every pod's
serial console log and QEMU command line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import kvm_helpers as kh
import pytest

pytestmark = [pytest.mark.qemu, pytest.mark.root]

MIB_KB = 1024
HOST_CPUS = len(os.sched_getaffinity(0))


@pytest.fixture(scope="module")
def stage1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pyrkt.stage1.build.aci import Flavor, Hypervisor, build_stage1_aci

    return build_stage1_aci(Flavor.KVM, tmp_path_factory.mktemp("stage1"), Hypervisor.QEMU)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kh.busybox_aci(tmp_path_factory.mktemp("aci"))


@pytest.fixture(scope="module")
def accel_env(tmp_path_factory: pytest.TempPathFactory, stage1: Path) -> Iterator[str]:
    """Decide the accelerator once for the module (the probe is cached per --dir)."""
    import tarfile

    from pyrkt.stage1.kvm import accel

    work = tmp_path_factory.mktemp("accel")
    with tarfile.open(stage1) as tar:
        for name in ("rootfs/kvm/vmlinuz", "rootfs/kvm/initrd.img"):
            tar.extract(name, work, filter="data")
    d = accel.decide(work / "rootfs/kvm/vmlinuz", work / "rootfs/kvm/initrd.img", work)
    old = os.environ.get(accel.ENV_FORCE)
    os.environ[accel.ENV_FORCE] = d.accel.value
    yield d.accel.value
    if old is None:
        del os.environ[accel.ENV_FORCE]
    else:
        os.environ[accel.ENV_FORCE] = old


class Rkt:
    def __init__(self, d: Path, stage1: Path) -> None:
        self.dir = d
        self.stage1 = stage1
        self.procs: list[subprocess.Popen[str]] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pyrkt", f"--dir={self.dir}", *args]

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def run_args(self, *args: str) -> list[str]:
        return ["run", "--insecure-options=image", "--net=none",
                f"--stage1-path={self.stage1}", *args]

    def run(self, *args: str, debug: bool = False) -> subprocess.CompletedProcess[str]:
        return self(*(["--debug"] if debug else []), *self.run_args(*args))

    def start(self, *args: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(self.argv(*self.run_args(*args)), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def wait_running(self, uuid_file: Path, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if uuid_file.exists() and uuid_file.read_text().strip():
                uuid = uuid_file.read_text().strip()
                pods = [p for p in kh.pod_dirs(self.dir) if p.name == uuid]
                if pods and (pods[0] / "kvm/ctl/started").exists():
                    return uuid
            time.sleep(0.2)
        raise AssertionError("the pod did not start\n" + kh.all_diagnostics(self.dir))

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for pod in kh.pod_dirs(self.dir):
            for pid in kh.qemu_pids_for(str(pod)):
                os.kill(pid, 9)
        # What a pod stopped with --force or killed still holds (its QEMU's cgroups, the
        # data dir's templates' RAM files on /dev/shm) goes with `rkt gc`, as a user's.
        if self.dir.is_dir():
            self("gc", "--grace-period=0s", timeout=120)


@pytest.fixture
def rkt(tmp_path: Path, stage1: Path, accel_env: str) -> Iterator[Rkt]:
    r = Rkt(tmp_path / "rkt", stage1)
    yield r
    print(kh.all_diagnostics(r.dir))  # shown when the test failed
    r.cleanup()


def meminfo_kb(out: str) -> int:
    line = next(x for x in out.splitlines() if x.startswith("MemTotal:"))
    return int(line.split()[1])


def assert_memory(kb: int, mib: int) -> None:
    # The guest kernel keeps some of the VM's RAM for itself.
    assert mib * MIB_KB - 80 * MIB_KB < kb <= mib * MIB_KB, (kb, mib)


SIZE_PROBE = 'nproc; grep MemTotal /proc/meminfo'


def test_exit_code_env_args_output_and_size_with_no_limits(rkt: Rkt, image: Path,
                                                           tmp_path: Path) -> None:
    uuid_file = tmp_path / "uuid"
    r = rkt.run(f"--uuid-file-save={uuid_file}", "--set-env=FOO=from flag", str(image),
                "--exec", "/bin/sh", "--", "-c",
                f'echo "$FROM_IMAGE|$FOO|$1|$(hostname)"; echo to-stderr >&2; {SIZE_PROBE}',
                "arg0", "first arg")
    uuid = uuid_file.read_text().strip()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"image|from flag|first arg|rkt-{uuid}"
    assert lines[1] == str(HOST_CPUS)  # no CPU limit: every host CPU
    assert_memory(meminfo_kb(r.stdout), 128 + 128)
    assert "to-stderr" in r.stderr.splitlines()
    # Without --debug: no kernel messages, no hypervisor command line.
    assert "Linux version" not in r.stderr and "qemu-system" not in r.stderr
    st = rkt("status", uuid)
    assert "state=exited" in st.stdout and "app-busybox=0" in st.stdout, st.stdout


def test_multi_app_first_failure_and_size_with_one_unlimited(rkt: Rkt, image: Path,
                                                             tmp_path: Path) -> None:
    """The first app that fails stops the pod (rkt's OnFailure=halt): `ok` (which would
    sleep for ten minutes once it printed what it sees) gets SIGTERM when `fails` exits
    5 (only once `ok` said it printed: a file in a volume they share), and `rkt run`
    exits 5, not `ok`'s 143, though `ok` comes first in the pod."""
    uuid_file = tmp_path / "uuid"
    r = rkt.run(f"--uuid-file-save={uuid_file}", "--volume=sync,kind=empty",
                "--mount=volume=sync,target=/sync",
                str(image), "--name=ok", "--memory=128Mi", "--cpu=1", "--exec", "/bin/sh", "--",
                "-c", f"{SIZE_PROBE}; cat /proc/self/cgroup; : > /sync/done; exec sleep 600",
                "---", str(image), "--name=fails", "--exec", "/bin/sh", "--", "-c",
                "until [ -e /sync/done ]; do sleep 0.1; done; exit 5")
    assert r.returncode == 5, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == str(HOST_CPUS)  # one app has no CPU limit
    assert_memory(meminfo_kb(r.stdout), 128 + 128 + 128)
    assert "0::/rkt/ok" in lines  # the limited app runs in its own cgroup in the guest
    st = rkt("status", uuid_file.read_text().strip())
    assert "app-ok=143" in st.stdout and "app-fails=5" in st.stdout, st.stdout


def test_debug_size_all_limited_and_volumes(rkt: Rkt, image: Path,
                                                     tmp_path: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "given").write_text("from host\n")
    script = ("cat /ro/given; touch /ro/new 2>/dev/null && echo ro-writable || echo ro-refused;"
              " echo written > /rw/out; echo e > /scratch/f && cat /scratch/f;"
              f" {SIZE_PROBE}")
    r = rkt.run(f"--volume=ro,kind=host,source={ro},readOnly=true",
                f"--volume=rw,kind=host,source={rw}", "--volume=scratch,kind=empty",
                str(image), "--memory=256Mi", "--cpu=1",
                "--mount=volume=ro,target=/ro", "--mount=volume=rw,target=/rw",
                "--mount=volume=scratch,target=/scratch",
                "--exec", "/bin/sh", "--", "-c", script, debug=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:4] == ["from host", "ro-refused", "e", "1"], r.stdout
    assert_memory(meminfo_kb(r.stdout), 128 + 256)
    assert not (ro / "new").exists()
    assert (rw / "out").read_text() == "written\n"
    # --debug: the hypervisor command line, the VM size, the accelerator, kernel messages
    # (or, for a VM restored from a template, which booted before, which one and how fast).
    assert "qemu-system-x86_64" in r.stderr
    assert "VM size 1 vCPU(s), 384 MiB" in r.stderr
    assert "accelerator" in r.stderr
    assert "Linux version" in r.stderr or re.search(r"restored from template \w+ in \d+ ms",
                                                    r.stderr)


def test_enter_and_graceful_stop(rkt: Rkt, image: Path, tmp_path: Path) -> None:
    uuid_file = tmp_path / "uuid"
    p = rkt.start(f"--uuid-file-save={uuid_file}", str(image), "--exec", "/bin/sh", "--", "-c",
                  "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 1; done")
    uuid = rkt.wait_running(uuid_file)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"  # the trap is set
    e = rkt("enter", uuid, "hostname")
    assert e.returncode == 0, e.stderr
    assert e.stdout == f"rkt-{uuid}\n"
    e = rkt("enter", uuid, "/bin/sh", "-c", "echo $FROM_IMAGE; exit 4")
    assert (e.returncode, e.stdout) == (4, "image\n"), e.stderr
    st = rkt("status", uuid)
    pid = int(next(x for x in st.stdout.splitlines() if x.startswith("pid="))[4:])
    assert "qemu-system" in Path(f"/proc/{pid}/cmdline").read_text()
    s = rkt("stop", uuid)
    assert s.returncode == 0, s.stderr
    out, err = p.communicate(timeout=300)
    assert p.returncode == 42, err  # the app got SIGTERM and exited by itself
    assert "got-term" in out
    assert "app-busybox=42" in rkt("status", uuid).stdout


def test_stop_force_then_gc_leaves_nothing(rkt: Rkt, image: Path, tmp_path: Path) -> None:
    uuid_file = tmp_path / "uuid"
    p = rkt.start(f"--uuid-file-save={uuid_file}", str(image), "--exec", "/bin/sleep",
                  "--", "600")
    uuid = rkt.wait_running(uuid_file)
    pod = next(d for d in kh.pod_dirs(rkt.dir) if d.name == uuid)
    assert kh.qemu_pids_for(str(pod))
    # While the VM runs, `rkt run` is the stage1's static waiter, not a Python process.
    status = Path(f"/proc/{p.pid}/status").read_text()
    rss_kib = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:")))
    assert Path(f"/proc/{p.pid}/exe").resolve().name == "rkt-wait"
    assert rss_kib < 4 * MIB_KB, status
    s = rkt("stop", "--force", uuid)
    assert s.returncode == 0, s.stderr
    p.communicate(timeout=120)
    assert "state=exited" in rkt("status", uuid).stdout
    g = rkt("gc", "--grace-period=0s")
    assert g.returncode == 0, g.stderr
    assert not kh.qemu_pids_for(uuid)
    assert not kh.pod_dirs(rkt.dir), "pod folders left behind"
    with open("/proc/self/mountinfo") as f:
        assert uuid not in f.read()


def test_sigterm_to_rkt_run_stops_the_pod_gracefully(rkt: Rkt, image: Path,
                                                      tmp_path: Path) -> None:
    uuid_file = tmp_path / "uuid"
    p = rkt.start(f"--uuid-file-save={uuid_file}", str(image), "--exec", "/bin/sh", "--", "-c",
                  "trap 'echo got-term; exit 43' TERM; echo ready; while :; do sleep 1; done")
    uuid = rkt.wait_running(uuid_file)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"  # the trap is set
    p.terminate()  # what a service manager does to `rkt run`
    out, err = p.communicate(timeout=300)
    assert p.returncode == 43, err
    assert "got-term" in out
    assert not kh.qemu_pids_for(uuid)


# A non-interactive pod whose `rkt run` is on a terminal (pexpect's pty): what the user
# types, the app, `rkt run`'s exit status, a line of `rkt status`.
KEYS = [
    # Ctrl-C: SIGINT to the terminal's foreground group; the pod stops as the container
    # flavor's, its apps getting SIGINT (not QEMU, whose end lost their codes: exit 0)
    ("\x03", "trap 'echo got-int; exit 44' INT; echo ready; while :; do sleep 1; done",
     44, "app-busybox=44"),
    # QEMU's escape, Ctrl-a x: the seed's "You can exit pressing <Ctrl-a x>" (not only
    # with --interactive)
    ("\x01x", "echo ready; exec sleep 600", 0, "state=exited"),
]  # fmt: skip


@pytest.mark.parametrize(("keys", "script", "code", "status"), KEYS, ids=["ctrl-c", "ctrl-a-x"])
def test_keys_on_the_terminal_of_a_non_interactive_pod(rkt: Rkt, image: Path, tmp_path: Path,
                                                       keys: str, script: str, code: int,
                                                       status: str) -> None:
    import pexpect

    uuid_file = tmp_path / "uuid"
    argv = rkt.argv(*rkt.run_args(f"--uuid-file-save={uuid_file}", str(image), "--exec",
                                  "/bin/sh", "--", "-c", script))
    p = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", timeout=300)
    try:
        p.expect("ready")
        p.send(keys)
        p.expect(pexpect.EOF)
        p.close()
        assert p.exitstatus == code, p.before
        if code:
            assert "got-int" in (p.before or "")
        uuid = uuid_file.read_text().strip()
        assert not kh.qemu_pids_for(uuid)
        assert status in rkt("status", uuid).stdout.splitlines()
    finally:
        if p.isalive():
            p.terminate(force=True)


def _pod_dir(rkt: Rkt, uuid: str) -> Path:
    return next(d for d in kh.pod_dirs(rkt.dir) if d.name == uuid)


def test_qemu_killed_by_sigkill_fails_rkt_run_and_status_says_why(rkt: Rkt, image: Path,
                                                                  tmp_path: Path) -> None:
    uuid_file = tmp_path / "uuid"
    p = rkt.start(f"--uuid-file-save={uuid_file}", str(image), "--exec", "/bin/sleep",
                  "--", "600")
    uuid = rkt.wait_running(uuid_file)
    qemu = kh.qemu_pids_for(str(_pod_dir(rkt, uuid)))
    assert len(qemu) == 1
    os.kill(qemu[0], 9)  # as the OOM killer does
    _, err = p.communicate(timeout=120)
    assert p.returncode == 254, err
    said = [ln for ln in err.splitlines() if "SIGKILL" in ln]
    assert len(said) == 1 and said[0].startswith("stage1: "), err
    assert "before app(s) busybox finished" in said[0]
    st = rkt("status", uuid)
    lines = st.stdout.splitlines()
    assert "state=exited" in lines and not any(x.startswith("app-") for x in lines), st.stdout
    failure = [x for x in lines if x.startswith("failure=")]
    assert len(failure) == 1 and "killed by SIGKILL" in failure[0], st.stdout
    js = rkt("status", "--format=json", uuid)
    assert '"failure": "the VM stopped (killed by SIGKILL)' in js.stdout, js.stdout
    assert '"exit_code": null' in js.stdout


def test_enter_follows_no_link_the_guest_left_in_the_control_share(rkt: Rkt, image: Path,
                                                                   tmp_path: Path) -> None:
    """The guest's /ctl is POD/kvm/ctl on the host: a guest that swaps its entries for
    symlinks (here swapped from the host side, which is the same file system) must not
    make `rkt enter` create anything outside the pod, nor copy a host file into it."""
    uuid_file = tmp_path / "uuid"
    rkt.start(f"--uuid-file-save={uuid_file}", str(image), "--exec", "/bin/sleep", "--", "600")
    uuid = rkt.wait_running(uuid_file)
    ctl = _pod_dir(rkt, uuid) / "kvm" / "ctl"
    host_dir = tmp_path / "host-folder"
    host_dir.mkdir()
    (host_dir / "keep").write_text("keep\n")
    secret = tmp_path / "host-secret"
    secret.write_text("echo host-secret-4711;\n")

    def stamp() -> tuple[int, int, list[str]]:
        st = host_dir.stat()
        return st.st_mtime_ns, st.st_ctime_ns, sorted(p.name for p in host_dir.iterdir())

    before = stamp()
    (ctl / "enter").rename(ctl / "enter.real")
    (ctl / "enter").symlink_to(host_dir)
    e = rkt("enter", uuid, "hostname")
    assert e.returncode == 254, e.stderr
    assert len(e.stderr.strip().splitlines()) == 1, e.stderr
    assert stamp() == before  # nothing made (nor made and removed) in the host folder
    (ctl / "enter").unlink()
    (ctl / "enter.real").rename(ctl / "enter")

    (ctl / "apps" / "busybox").rename(ctl / "apps" / "busybox.real")
    (ctl / "apps" / "busybox").symlink_to(secret)
    e = rkt("enter", uuid, "hostname")
    assert e.returncode == 254, e.stderr
    assert "host-secret-4711" not in e.stdout + e.stderr
    (ctl / "apps" / "busybox").unlink()
    (ctl / "apps" / "busybox.real").rename(ctl / "apps" / "busybox")

    e = rkt("enter", uuid, "hostname")  # put back, enter works
    assert (e.returncode, e.stdout) == (0, f"rkt-{uuid}\n"), e.stderr
