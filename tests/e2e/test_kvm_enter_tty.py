"""`rkt enter` into a VM pod from a terminal (driven through a pty with pexpect), as a
user types it: a real pty in the guest, its size, Ctrl-C, the exit code, the host
terminal restored. One pod (one VM boot under TCG) for the whole module."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import kvm_helpers as kh
import pexpect
import pytest

pytestmark = [pytest.mark.qemu, pytest.mark.root]

TIMEOUT = 300  # TCG on a loaded 2-core machine
RKT_ERROR = 254


@dataclass(frozen=True)
class Pod:
    dir: Path
    uuid: str
    env: dict[str, str]

    def argv(self, *args: str) -> list[str]:
        return ["-m", "pyrkt", f"--dir={self.dir}", *args]

    def rkt(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *self.argv(*args)], capture_output=True,
                              text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                              env=self.env)

    def enter_in_shell(self, rows: int = 24, cols: int = 80) -> pexpect.spawn:
        """`rkt enter UUID` in a host shell on a pty; after it: `RC=<its code>` and the
        host terminal's settings (`stty -a`)."""
        cmd = " ".join([sys.executable, *self.argv("enter", self.uuid)])
        return pexpect.spawn("/bin/sh", ["-c", f"{cmd}; echo RC=$?; stty -a"], env=self.env,
                             encoding="utf-8", timeout=TIMEOUT, dimensions=(rows, cols))


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    from pyrkt.stage1.build.aci import Flavor, Hypervisor, build_stage1_aci
    from pyrkt.stage1.kvm import accel

    work = tmp_path_factory.mktemp("enter-tty")
    stage1 = build_stage1_aci(Flavor.KVM, work / "s1", Hypervisor.QEMU)
    with tarfile.open(stage1) as tar:
        for name in ("rootfs/kvm/vmlinuz", "rootfs/kvm/initrd.img"):
            tar.extract(name, work / "x", filter="data")
    kvm = work / "x" / "rootfs" / "kvm"
    decision = accel.decide(kvm / "vmlinuz", kvm / "initrd.img", work / "cache")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "vt100",
           accel.ENV_FORCE: decision.accel.value}
    image = kh.busybox_aci(work / "aci")
    d = work / "rkt"
    uuid_file = work / "uuid"
    run = subprocess.Popen(
        [sys.executable, "-m", "pyrkt", f"--dir={d}", "run", "--insecure-options=image",
         "--net=none", f"--stage1-path={stage1}", f"--uuid-file-save={uuid_file}",
         str(image), "--exec", "/bin/sh", "--", "-c",
         "echo from-the-app > /dev/shm/app-marker; exec sleep 3600"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + TIMEOUT
        uuid = ""
        while time.monotonic() < deadline and run.poll() is None:
            uuid = uuid_file.read_text().strip() if uuid_file.exists() else ""
            if uuid and any((p / "kvm/ctl/started").exists()
                            for p in kh.pod_dirs(d) if p.name == uuid):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the pod did not start\n" + kh.all_diagnostics(d))
        yield Pod(d, uuid, env)
    finally:
        print(kh.all_diagnostics(d))  # shown when a test failed
        if uuid:
            subprocess.run([sys.executable, "-m", "pyrkt", f"--dir={d}", "stop", "--force",
                            uuid], capture_output=True, timeout=TIMEOUT, env=env)
        try:
            run.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            run.kill()
            run.communicate()
        kh.kill_and_gc(d, env, TIMEOUT)


def _close(p: pexpect.spawn) -> None:
    if p.isalive():
        p.terminate(force=True)


def test_terminal_session_pty_size_hostname_ctrl_c_and_exit_code(pod: Pod) -> None:
    p = pod.enter_in_shell(rows=33, cols=101)
    try:
        p.expect("# ")  # the guest shell's prompt
        p.sendline("busybox tty")
        p.expect(r"/dev/pts/\d+")  # a pty of the app's own devpts
        # the app's mount namespace, joined: its own /dev/shm (a tmpfs of its own)
        p.sendline("cat /dev/shm/app-marker")
        p.expect("from-the-app")
        p.sendline("busybox stty size")
        p.expect("33 101")
        p.setwinsize(40, 120)  # SIGWINCH to rkt enter: the guest pty follows
        p.sendline("busybox stty size")
        p.expect("40 120")
        p.sendline("hostname")
        p.expect(f"rkt-{pod.uuid}")
        # '' keeps the echoed command line from matching what the command prints.
        p.sendline("sh -c 'echo sl''eeping; exec sleep 100'")
        p.expect("sleeping")
        p.sendcontrol("c")
        p.expect("# ")  # long before the 100 s
        p.sendline("echo st''atus=$?")
        p.expect("status=130")  # 128 + SIGINT: Ctrl-C reached the guest process
        p.sendline("exit 7")
        p.expect("RC=7")
        p.expect(pexpect.EOF)
        settings = p.before or ""
        # Back in cooked mode: canonical input and echo on, as before `rkt enter`.
        flags = settings.split()
        assert "icanon" in flags and "echo" in flags, settings
        assert "-icanon" not in flags and "-echo" not in flags, settings
    finally:
        _close(p)
    st = pod.rkt("status", pod.uuid)
    assert "state=running" in st.stdout, st.stdout + st.stderr  # Ctrl-C spared the pod


def test_second_terminal_session_gets_a_clear_error(pod: Pod) -> None:
    first = pod.enter_in_shell()
    try:
        first.expect("# ")
        second = pod.enter_in_shell()
        try:
            second.expect("another terminal session is open in this pod")
            second.expect(f"RC={RKT_ERROR}")
        finally:
            _close(second)
        first.sendline("echo st''ill-here")
        first.expect("still-here")
        first.sendline("exit")
        first.expect("RC=0")
    finally:
        _close(first)


def test_without_a_terminal_stdin_stdout_and_exit_code_as_before(pod: Pod) -> None:
    e = pod.rkt("enter", pod.uuid, "/bin/sh", "-c", "echo out; echo err >&2; exit 3")
    assert (e.returncode, e.stdout) == (3, "out\n"), e.stderr
    assert "err" in e.stderr


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def test_sigterm_to_rkt_enter_restores_the_terminal_and_frees_the_pod(pod: Pod) -> None:
    p = pod.enter_in_shell()
    try:
        p.expect("# ")
        (enter_pid,) = _children(p.pid)  # `rkt enter`, the host shell's one child
        os.kill(enter_pid, signal.SIGTERM)
        p.expect(f"RC={RKT_ERROR}")
        p.expect(pexpect.EOF)
        flags = (p.before or "").split()
        assert "icanon" in flags and "echo" in flags, p.before
    finally:
        _close(p)
    again = pod.enter_in_shell()  # the guest hung the old session up: a new one starts
    try:
        again.expect("# ")
        again.sendline("exit 0")
        again.expect("RC=0")
    finally:
        _close(again)
