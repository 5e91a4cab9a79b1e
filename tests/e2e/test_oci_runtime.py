"""rkt-runtime driven directly, as a shim drives it: the test process is the child
subreaper (PR_SET_CHILD_SUBREAPER, as containerd's shim and conmon are), so the
container process `create` leaves behind becomes its child and its exit status can be
collected. Real VMs (TCG here); a failing test prints the QEMU command line and the
serial log of every container under the test's root."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyrkt.oci.state import alive
from support.oci import (
    RUNTIME,
    leftovers,
    make_bundle,
    runtime_diagnostics,
    set_args,
    set_config,
)
from support.procs import qemu_pids

pytestmark = [pytest.mark.root, pytest.mark.qemu]

PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture(autouse=True, scope="module")
def subreaper() -> Iterator[None]:
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


class Runtime:
    def __init__(self, root: Path, bundle: Path) -> None:
        self.root, self.bundle = root, bundle

    def __call__(self, *args: str, timeout: float = 300,
                 stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            cp = subprocess.run([str(RUNTIME), "--root", str(self.root), *args], stdout=out,
                                stderr=err, stdin=stdin, timeout=timeout, check=False)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(cp.args, cp.returncode, out.read(), err.read())

    def ok(self, *args: str) -> str:
        cp = self(*args)
        assert cp.returncode == 0, f"{cp.args}: {cp.stderr}\n{runtime_diagnostics(self.root)}"
        return cp.stdout

    def state(self, cid: str) -> dict[str, object]:
        data = json.loads(self.ok("state", cid))
        assert isinstance(data, dict)
        return data


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    bundle = make_bundle(tmp_path / "bundle", ["true"])
    r = Runtime(tmp_path / "root", bundle)
    yield r
    for d in list(r.root.iterdir()) if r.root.is_dir() else []:
        r("delete", "--force", d.name)
    left = leftovers(r.root)
    assert not left, f"{left}\n{runtime_diagnostics(r.root)}"


def wait_exit(pid: int, timeout: float = 300) -> int:
    """The exit status (128+N for signal N) of a child of ours (we are its subreaper)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else \
                128 + os.WTERMSIG(status)
        time.sleep(0.1)
    raise AssertionError(f"pid {pid} did not exit")


def started(rt: Runtime, cid: str, out: Path) -> int:
    """create (stdout and stderr to out) + start; the container process's pid."""
    pid_file = rt.root.parent / f"{cid}.pid"
    with open(out, "w") as f:
        cp = subprocess.run([str(RUNTIME), "--root", str(rt.root), "create", "--bundle",
                             str(rt.bundle), "--pid-file", str(pid_file), cid], stdout=f,
                            stderr=f, stdin=subprocess.DEVNULL, timeout=300, check=False)
    assert cp.returncode == 0, out.read_text()
    pid = int(pid_file.read_text())
    assert rt.state(cid)["pid"] == pid
    rt.ok("start", cid)
    return pid


def test_exit_status_and_output_are_the_containers(rt: Runtime, tmp_path: Path) -> None:
    set_args(rt.bundle, ["sh", "-c", "echo to-stdout; echo to-stderr >&2; ulimit -n; "
                         "hostname; exit 3"])
    out = tmp_path / "out"
    pid = started(rt, "c1", out)
    assert wait_exit(pid) == 3
    assert out.read_text().split() == ["to-stdout", "to-stderr", "1024", "oci-test"]
    assert rt.state("c1")["status"] == "stopped"
    rt.ok("delete", "c1")


def test_kill_goes_into_the_guest_and_exec_runs_there(rt: Runtime, tmp_path: Path) -> None:
    # SIGINT: the pod script starts apps in the background, where a shell ignores it;
    # rkt-exec gives the app every signal back (a shell cannot trap one ignored at start)
    set_args(rt.bundle, ["sh", "-c", "trap 'echo got INT; exit 7' INT; echo ready; "
                         "while :; do sleep 1; done"])
    out = tmp_path / "out"
    pid = started(rt, "c2", out)
    cp = rt("exec", "c2", "sh", "-c", "echo $((40+2)); id -u; exit 5")
    assert cp.returncode == 5, cp.stderr + runtime_diagnostics(rt.root)
    assert cp.stdout.split() == ["42", "0"]
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sh", "-c", "sleep 1; echo detached"],
                                   "cwd": "/tmp", "env": ["PATH=/bin"],
                                   "user": {"uid": 1000, "gid": 1000}}))
    pid_file = tmp_path / "exec.pid"
    with open(tmp_path / "exec.out", "w") as f:
        cp2 = subprocess.run([str(RUNTIME), "--root", str(rt.root), "exec", "--process",
                              str(process), "--detach", "--pid-file", str(pid_file), "c2"],
                             stdout=f, stderr=f, stdin=subprocess.DEVNULL, timeout=300,
                             check=False)
    assert cp2.returncode == 0
    assert wait_exit(int(pid_file.read_text())) == 0  # our child too (subreaper)
    assert (tmp_path / "exec.out").read_text() == "detached\n"
    ps = json.loads(rt.ok("ps", "--format", "json", "c2"))
    assert pid in ps and any(q in ps for q in qemu_pids(str(rt.root)))
    rt.ok("kill", "c2", "INT")
    assert wait_exit(pid) == 7
    assert "got INT" in out.read_text()
    rt.ok("delete", "c2")


@pytest.mark.parametrize("victim", ["container-process", "qemu"])
def test_kill_9_of_anything_then_delete_leaves_nothing(rt: Runtime, tmp_path: Path,
                                                      victim: str) -> None:
    set_args(rt.bundle, ["sleep", "600"])
    pid = started(rt, "c3", tmp_path / "out")
    deadline = time.monotonic() + 60
    while not qemu_pids(str(rt.root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    (qemu,) = qemu_pids(str(rt.root))
    os.kill(pid if victim == "container-process" else qemu, signal.SIGKILL)
    code = wait_exit(pid)
    assert code == (137 if victim == "container-process" else 254)  # 254: rkt's own failure
    assert rt.state("c3")["status"] == "stopped"
    rt.ok("delete", "c3")
    time.sleep(0.5)
    assert not alive(qemu, 0)
    assert not (rt.root / "c3").exists()


def test_terminal_through_the_console_socket(rt: Runtime, tmp_path: Path) -> None:
    set_args(rt.bundle, ["sh"])
    c = json.loads((rt.bundle / "config.json").read_text())
    c["process"]["terminal"] = True
    (rt.bundle / "config.json").write_text(json.dumps(c))
    sock_path = tmp_path / "console.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    pid_file = tmp_path / "c4.pid"
    creator = subprocess.Popen([str(RUNTIME), "--root", str(rt.root), "create", "--bundle",
                                str(rt.bundle), "--pid-file", str(pid_file),
                                "--console-socket", str(sock_path), "c4"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    conn, _ = server.accept()
    _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    conn.close()
    server.close()
    assert creator.wait(timeout=300) == 0
    master = fds[0]
    pid = int(pid_file.read_text())
    rt.ok("start", "c4")

    def read_until(text: bytes, timeout: float = 300) -> bytes:
        buf = b""
        deadline = time.monotonic() + timeout
        import select

        while text not in buf:
            assert time.monotonic() < deadline, buf.decode(errors="replace") + \
                runtime_diagnostics(rt.root)
            r, _, _ = select.select([master], [], [], 1)
            if r:
                buf += os.read(master, 4096)
        return buf

    read_until(b"# ")
    os.write(master, b"tty; echo $((6*7))\n")
    assert b"/dev/ttyS1" in read_until(b"42")
    # The last words before the exit reach the terminal: the guest's serial port is
    # hung up when its session leader exits, which drops what was not sent yet.
    os.write(master, b"echo last-$((1+1))-words; exit 4\n")
    assert wait_exit(pid) == 4
    rest = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(master, 4096):
            rest += chunk
    assert b"last-2-words" in rest
    os.close(master)
    rt.ok("delete", "c4")


def file_bind(dest: str, source: Path, *opts: str) -> dict[str, object]:
    return {"destination": dest, "type": "bind", "source": str(source),
            "options": ["bind", *opts]}


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Path]:
    """A folder on another file system than the runtime's root (/dev/shm)."""
    d = Path("/dev/shm") / f"pyrkt-test-{tmp_path.name}"
    assert os.stat("/dev/shm").st_dev != tmp_path.stat().st_dev
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_single_file_binds(rt: Runtime, tmp_path: Path, elsewhere: Path) -> None:
    """A read-only bind of a file (a copy: it is on another file system than --root) and
    a read-write one (the user's file itself, through a hard link): the container reads
    the one and appends to the other, and the host sees the append in its file."""
    conf = elsewhere / "app.conf"
    conf.write_text("greeting=hello\n")
    log = tmp_path / "app.log"
    log.write_text("host-line\n")
    set_config(rt.bundle, mounts=[file_bind("/etc/app.conf", conf, "ro"),
                                  file_bind("/var/log/app.log", log, "rw")])
    set_args(rt.bundle, ["sh", "-c", "cat /etc/app.conf; echo guest-line >> /var/log/app.log;"
                         " echo x >> /etc/app.conf || echo ro-refused"])
    out = tmp_path / "out"
    pid = started(rt, "c7", out)
    assert wait_exit(pid) == 0, f"{out.read_text()}\n{runtime_diagnostics(rt.root)}"
    text = out.read_text()
    assert "greeting=hello" in text and "ro-refused" in text, text
    assert log.read_text() == "host-line\nguest-line\n"
    assert conf.read_text() == "greeting=hello\n"
    rt.ok("delete", "c7")
    assert log.read_text() == "host-line\nguest-line\n"  # delete leaves the user's file


def test_refusals_leave_nothing(rt: Runtime, tmp_path: Path, elsewhere: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    set_config(rt.bundle, mounts=[file_bind("/opt/f", fifo)])
    cp = rt("create", "--bundle", str(rt.bundle), "c5")
    assert cp.returncode == 1 and "is a FIFO, not a file or a folder" in cp.stderr, cp.stderr
    one_file = elsewhere / "f"
    one_file.write_text("x")
    set_config(rt.bundle, mounts=[file_bind("/opt/f", one_file, "rw")])
    cp = rt("create", "--bundle", str(rt.bundle), "c5")  # refused once its state is made
    assert cp.returncode == 1 and "cannot bind the file" in cp.stderr, cp.stderr
    assert not any(rt.root.iterdir()) and one_file.read_text() == "x"
    set_config(rt.bundle, mounts=[], linux={"namespaces": [
        {"type": "network", "path": "/proc/self/ns/net"}]})  # the host's, to the runtime
    cp = rt("create", "--bundle", str(rt.bundle), "c6")
    assert cp.returncode == 1 and "the host's" in cp.stderr, cp.stderr
    host_links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert "rkttap" not in host_links  # no tap was made beside the host's interfaces
    cid = f"c-{uuid.uuid4().hex[:6]}"
    c = json.loads((rt.bundle / "config.json").read_text())
    c["process"]["terminal"] = True
    c["linux"] = {}
    (rt.bundle / "config.json").write_text(json.dumps(c))
    cp = rt("create", "--bundle", str(rt.bundle), cid)
    assert cp.returncode == 1 and "console-socket" in cp.stderr
    assert not any(rt.root.iterdir())


def test_exec_writes_nothing_through_a_guest_planted_symlink(rt: Runtime,
                                                             tmp_path: Path) -> None:
    """The guest owns the control share: it replaces /ctl/enter with a symlink to a host
    folder (planted here from the host, as the guest would over 9p). exec must refuse
    rather than make its request folder and files there."""
    set_args(rt.bundle, ["sleep", "600"])
    pid = started(rt, "c7", tmp_path / "out")
    assert rt("exec", "c7", "true").returncode == 0  # booted; /ctl/enter exists
    target = tmp_path / "host-folder"
    target.mkdir()
    enter = rt.root / "c7" / "pod" / "kvm" / "ctl" / "enter"
    subprocess.run(["rm", "-rf", str(enter)], check=True)
    enter.symlink_to(target)
    cp = rt("exec", "c7", "sh", "-c", "echo planted")
    assert cp.returncode == 255, cp.stdout + cp.stderr
    assert list(target.iterdir()) == []
    rt.ok("kill", "c7", "KILL")
    wait_exit(pid)
    rt.ok("delete", "c7")
