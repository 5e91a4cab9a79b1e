"""`rkt run` with the container (coreos, the default) and fly stage1s, as a user runs it:
a busybox ACI (and, with the registry fixture, busybox from a Docker registry)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import _container_pod as cp
import pytest

from pyrkt.linux.cgroup import PodCgroups
from support.images import write_aci

pytestmark = pytest.mark.root

MANIFEST = """{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/busybox",
"labels":[{"name":"version","value":"1.0"},{"name":"arch","value":"amd64"},
{"name":"os","value":"linux"}],
"app":{"exec":["/bin/sh","-c","echo default-exec"],"user":"0","group":"0",
"environment":[{"name":"FROM_IMAGE","value":"image"}]}}"""


@pytest.fixture(scope="module")
def busybox_aci(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("aci")
    cp.busybox_rootfs(work / "rootfs")
    return write_aci(work, MANIFEST, "busybox.aci")


@pytest.fixture(scope="module")
def fly_stage1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pyrkt.stage1.build.aci import Flavor, build_stage1_aci

    return build_stage1_aci(Flavor.FLY, tmp_path_factory.mktemp("stage1"))


class Rkt:
    def __init__(self, d: Path) -> None:
        self.dir = d

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pyrkt", f"--dir={self.dir}", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def uuids(self) -> list[str]:
        return [p.name for p in (self.dir / "pods").glob("*/*")]


@pytest.fixture
def rkt(tmp_path: Path) -> Iterator[Rkt]:
    r = Rkt(tmp_path / "rkt")
    yield r
    for uuid in r.uuids():
        PodCgroups(uuid).destroy()


def test_exit_code_status_and_image_env(rkt: Rkt, busybox_aci: Path, tmp_path: Path) -> None:
    uuid_file = tmp_path / "uuid"
    r = rkt("run", "--insecure-options=image", "--net=none", f"--uuid-file-save={uuid_file}",
            str(busybox_aci), "--exec", "/bin/sh", "--", "-c",
            'echo "$FROM_IMAGE $(hostname)"; exit 5')
    uuid = uuid_file.read_text().strip()
    assert r.returncode == 5, r.stderr
    assert r.stdout == f"image rkt-{uuid}\n"
    st = rkt("status", uuid)
    assert "app-busybox=5" in st.stdout.splitlines(), st.stdout + st.stderr
    assert not any(d.exists() for d in PodCgroups(uuid).pod_dirs())


def test_limits_caps_and_readonly_volume(rkt: Rkt, busybox_aci: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "f").write_text("hello\n")
    script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
              " || cat /sys/fs/cgroup/memory.max; grep CapBnd /proc/self/status;"
              " cat /data/f; touch /data/x 2>/dev/null || echo refused; ls /sys/class/net")
    r = rkt("run", "--insecure-options=image", "--net=none", str(busybox_aci),
            "--memory=42Mi", "--caps-retain=CAP_NET_BIND_SERVICE",
            "--exec", "/bin/sh", "--", "-c", script, "---",
            f"--volume=data,kind=host,source={vol},readOnly=true",
            "--mount", "volume=data,target=/data")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(42 * 1024 * 1024), "CapBnd:", "0000000000000400",
                                "hello", "refused", "lo"]
    assert not (vol / "x").exists()


def test_net_host_reaches_a_host_port(rkt: Rkt, busybox_aci: Path) -> None:
    got: list[bytes] = []

    def serve(srv: socket.socket) -> None:
        conn, _ = srv.accept()
        with conn:
            got.append(conn.recv(16))

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        t = threading.Thread(target=serve, args=(srv,), daemon=True)
        t.start()
        port = srv.getsockname()[1]
        r = rkt("run", "--insecure-options=image", "--net=host", str(busybox_aci),
                "--exec", "/bin/sh", "--", "-c", f"echo ping | nc 127.0.0.1 {port}")
        t.join(30)
    assert r.returncode == 0, r.stderr
    assert got == [b"ping\n"]


def test_fly_shares_the_host_and_records_exit(rkt: Rkt, busybox_aci: Path,
                                              fly_stage1: Path, tmp_path: Path) -> None:
    uuid_file = tmp_path / "uuid"
    r = rkt("run", "--insecure-options=image", f"--stage1-path={fly_stage1}",
            f"--uuid-file-save={uuid_file}", str(busybox_aci), "--user=1000",
            "--exec", "/bin/sh", "--", "-c", "hostname; id -u; pwd; exit 4")
    assert r.returncode == 4, r.stderr
    assert r.stdout.split() == [socket.gethostname(), "1000", "/"]
    st = rkt("status", uuid_file.read_text().strip())
    assert "app-busybox=4" in st.stdout.splitlines(), st.stdout + st.stderr


def test_fly_refuses_two_apps(rkt: Rkt, busybox_aci: Path, fly_stage1: Path) -> None:
    r = rkt("run", "--insecure-options=image", f"--stage1-path={fly_stage1}",
            str(busybox_aci), "--name=a", str(busybox_aci), "--name=b")
    assert r.returncode == 254
    assert "only supports 1 application per pod" in r.stderr


@pytest.mark.registry
def test_docker_busybox_from_registry(rkt: Rkt, busybox_image: str) -> None:
    r = rkt("run", "--insecure-options=image,http", "--net=none", busybox_image,
            "--exec", "/bin/sh", "--", "-c", "echo from-docker; exit 6")
    assert r.returncode == 6, r.stderr
    assert "from-docker" in r.stdout
    assert os.path.isdir(rkt.dir / "pods")


def _start_pod(rkt: Rkt, busybox_aci: Path, uuid_file: Path, script: str,
               *flags: str) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-m", "pyrkt", f"--dir={rkt.dir}", "run", "--insecure-options=image",
         *(flags or ("--net=none",)), f"--uuid-file-save={uuid_file}", str(busybox_aci),
         "--exec", "/bin/sh", "--", "-c", script],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    if line != "started\n":
        p.kill()
        raise AssertionError(f"pod did not start: {line!r} {p.communicate()[1]}")
    return p


def test_enter_then_stop(rkt: Rkt, busybox_aci: Path, tmp_path: Path) -> None:
    uuid_file = tmp_path / "uuid"
    p = _start_pod(rkt, busybox_aci, uuid_file, "echo started; exec sleep 1000")
    try:
        uuid = uuid_file.read_text().strip()
        e = rkt("enter", uuid, "/bin/sh", "-c", "echo in $(hostname) $FROM_IMAGE; exit 7")
        assert (e.returncode, e.stdout) == (7, f"in rkt-{uuid} image\n"), e.stderr
        s = rkt("stop", uuid)
        assert s.returncode == 0, s.stderr
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 143  # the app was killed by SIGTERM
    st = rkt("status", uuid)
    assert "app-busybox=143" in st.stdout.splitlines()


def test_sigkilled_pod_leaves_nothing_after_gc(rkt: Rkt, busybox_aci: Path,
                                              tmp_path: Path) -> None:
    uuid_file = tmp_path / "uuid"
    p = _start_pod(rkt, busybox_aci, uuid_file, "echo started; exec sleep 1000")
    uuid = uuid_file.read_text().strip()
    in_pod = PodCgroups(uuid).pids()
    assert in_pod, "the pod's processes are not in its cgroups"
    p.kill()
    p.wait()
    st = rkt("status", "--wait=30s", uuid)
    assert "state=exited" in st.stdout.splitlines(), st.stdout + st.stderr
    gc = rkt("gc", "--grace-period=0s")
    assert gc.returncode == 0, gc.stderr
    deadline = time.monotonic() + 10  # dead processes are reaped by the host's init
    while [p for p in in_pod if Path(f"/proc/{p}").exists()] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in in_pod if Path(f"/proc/{pid}").exists()]
    assert not any(d.exists() for d in PodCgroups(uuid).pod_dirs())
    assert uuid not in Path("/proc/self/mountinfo").read_text()
    assert not rkt.uuids()


def test_interactive_gets_the_terminal(rkt: Rkt, busybox_aci: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        sys.executable, ["-m", "pyrkt", f"--dir={rkt.dir}", "run", "--insecure-options=image",
                         "--interactive", "--net=none", str(busybox_aci), "--exec", "/bin/sh"],
        encoding="utf-8", timeout=60)
    try:
        child.expect("# ")
        child.sendline("tty; echo $((6*7))")
        child.expect("/dev/console")
        child.expect("42")
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 3


@pytest.mark.cni
def test_default_network_gives_eth0_and_is_released(rkt: Rkt, busybox_aci: Path,
                                                    tmp_path: Path) -> None:
    uuid_file = tmp_path / "uuid"
    r = rkt("run", "--insecure-options=image", "--net=default",
            f"--uuid-file-save={uuid_file}", str(busybox_aci), "--exec", "/bin/sh", "--",
            "-c", "ip -4 -o addr show eth0 | awk '{print $4}'; grep rkt- /etc/hosts")
    assert r.returncode == 0, r.stderr
    uuid = uuid_file.read_text().strip()
    cidr, hosts_line = r.stdout.splitlines()
    assert cidr.startswith("172.16.28.")  # rkt's default network
    assert hosts_line.split()[0] == "127.0.0.1" and hosts_line.split()[-1] == f"rkt-{uuid}"
    assert not Path(f"/run/netns/rkt-{uuid}").exists()


@pytest.mark.registry
def test_redis_from_registry_serves_and_stops(rkt: Rkt, redis_image: str,
                                              tmp_path: Path) -> None:
    """The seed's example: docker://redis in the container stage1, reached on the host
    network, stopped with `rkt stop` (redis exits 0 on SIGTERM)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uuid_file = tmp_path / "uuid"
    p = subprocess.Popen(
        [sys.executable, "-m", "pyrkt", f"--dir={rkt.dir}", "run",
         "--insecure-options=image,http", "--net=host", f"--uuid-file-save={uuid_file}",
         redis_image, "--", "--port", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    try:
        reply = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and p.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(b"PING\r\n")
                    reply = c.recv(16)
                    break
            except OSError:
                time.sleep(0.2)
        assert reply == b"+PONG\r\n", p.stdout.read() if p.poll() is not None and p.stdout \
            else "redis did not answer"
        st = rkt("stop", uuid_file.read_text().strip())
        assert st.returncode == 0, st.stderr
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0, out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_insecure_options_seccomp_lifts_the_filter(rkt: Rkt, busybox_aci: Path) -> None:
    seen = []
    for opts in ("image", "image,seccomp"):
        r = rkt(f"--insecure-options={opts}", "run", "--net=none", str(busybox_aci),
                "--exec", "/bin/sh", "--", "-c", "grep Seccomp: /proc/self/status")
        assert r.returncode == 0, r.stderr
        seen.append(r.stdout.split())
    assert seen == [["Seccomp:", "2"], ["Seccomp:", "0"]]


def test_fly_enter_and_stop(rkt: Rkt, busybox_aci: Path, fly_stage1: Path,
                            tmp_path: Path) -> None:
    uuid_file = tmp_path / "uuid"
    p = _start_pod(rkt, busybox_aci, uuid_file, "echo started; exec sleep 1000",
                   f"--stage1-path={fly_stage1}")
    try:
        uuid = uuid_file.read_text().strip()
        e = rkt("enter", uuid, "/bin/sh", "-c", "echo $FROM_IMAGE; ls /bin/busybox")
        assert (e.returncode, e.stdout) == (0, "image\n/bin/busybox\n"), e.stderr
        assert rkt("stop", uuid).returncode == 0
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 143
    assert "app-busybox=143" in rkt("status", uuid).stdout.splitlines()
