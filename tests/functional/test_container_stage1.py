"""The container (coreos) stage1 executor, driven with hand-built PodPlans the way the
`run` entrypoint drives it, in a child process. Asserts what a user sees: output, exit
codes, status files, what the apps can and cannot do, and what is left afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import _container_pod as cp
import pytest

from pyrkt.linux.caps import mask_of
from pyrkt.linux.cgroup import Layout, PodCgroups, shares_to_weight
from pyrkt.stage1 import contract
from pyrkt.stage1.plan import AppPlan, DnsPlan, MountPlan, PodPlan, VolumeKind

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cp.busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


class Pods:
    def __init__(self, base: Path, template: Path) -> None:
        self.base = base
        self.template = template
        self.uuids: list[str] = []

    def pod(self, *apps: str) -> tuple[str, Path]:
        uuid = str(uuidlib.uuid4())
        self.uuids.append(uuid)
        return uuid, cp.new_pod(self.base, uuid, self.template, apps)


@pytest.fixture
def pods(tmp_path: Path, template: Path) -> Iterator[Pods]:
    p = Pods(tmp_path, template)
    yield p
    for uuid in p.uuids:  # never leave cgroups behind, even when a test fails
        PodCgroups(uuid).destroy()


def sh(pod: Path, name: str, script: str, **kw: object) -> AppPlan:
    return cp.app(pod, name, "/bin/sh", "-c", script, **kw)


def plan(uuid: str, *apps: AppPlan, **kw: object) -> PodPlan:
    kw.setdefault("hostname", f"rkt-{uuid}")
    kw.setdefault("net", "none")
    return PodPlan(uuid=uuid, apps=apps, **kw)  # type: ignore[arg-type]


def test_exit_code_and_status_file(pods: Pods) -> None:
    uuid, pod = pods.pod("five")
    r = cp.run(plan(uuid, sh(pod, "five", "echo out; echo err >&2; exit 5")), pod)
    assert r.returncode == 5, r.stderr
    assert r.stdout == "out\n"
    assert "err\n" in r.stderr
    assert contract.read_exit_codes(pod, ["five"]) == {"five": 5}
    assert int(contract.pid_file(pod).read_text()) > 1


def test_multi_app_pod_shares_namespaces(pods: Pods) -> None:
    uuid, pod = pods.pod("a", "b")
    p = plan(uuid,
             sh(pod, "a", "echo a:$$ > /dev/null; echo a-done"),
             sh(pod, "b", "sleep 0.2; echo b:$(hostname); ps | grep -c 'sh -c' ; exit 3"),
             hostname="shared")
    r = cp.run(p, pod)
    assert r.returncode == 3, r.stderr
    assert "a-done" in r.stdout
    assert "b:shared" in r.stdout
    assert contract.read_exit_codes(pod, ["a", "b"]) == {"a": 0, "b": 3}


def test_first_app_to_fail_stops_the_pod(pods: Pods) -> None:
    """As rkt: y fails, the pod stops (x, still sleeping, gets SIGTERM), y's code."""
    uuid, pod = pods.pod("x", "y")
    r = cp.run(plan(uuid, sh(pod, "x", "sleep 60; exit 7"), sh(pod, "y", "exit 9")), pod)
    assert r.returncode == 9
    assert contract.read_exit_codes(pod, ["x", "y"]) == {"x": 143, "y": 9}


def test_env_user_groups_workdir(pods: Pods) -> None:
    uuid, pod = pods.pod("u")
    (contract.app_rootfs(pod, "u") / "work").mkdir()
    app = sh(pod, "u", 'echo "$FOO|$(id -u)|$(id -g)|$(id -G)|$(pwd)"',
             env=(*cp.ENV, ("FOO", "bar baz")), uid=1000, gid=1001,
             supplementary_gids=(10, 20), working_dir="/work")
    r = cp.run(plan(uuid, app), pod)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "bar baz|1000|1001|1001 10 20|/work"


def test_hostname_hosts_and_pid_namespace(pods: Pods) -> None:
    uuid, pod = pods.pod("h")
    p = plan(uuid, sh(pod, "h", "hostname; cat /etc/hostname; grep -c myhost /etc/hosts;"
                               " echo pid=$$; ls /sys/class/net"),
             hostname="myhost", dns=DnsPlan(servers=("10.0.0.53",), search=("example.org",)))
    script_resolv = sh(pod, "h", "cat /etc/resolv.conf")
    r = cp.run(p, pod)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["myhost", "myhost", "1", "pid=2", "lo"]
    r = cp.run(plan(uuid, script_resolv, dns=p.dns), pod)
    assert "nameserver 10.0.0.53" in r.stdout and "search example.org" in r.stdout


def test_net_host_sees_host_interfaces(pods: Pods) -> None:
    uuid, pod = pods.pod("n")
    r = cp.run(plan(uuid, sh(pod, "n", "ls /sys/class/net"), net="host"), pod)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == sorted(os.listdir("/sys/class/net"))


def test_proc_sys_and_rootfs_read_only(pods: Pods) -> None:
    uuid, pod = pods.pod("ro")
    script = ("echo x > /proc/sys/kernel/hostname && echo procsys-writable;"
              " touch /sys/kernel/x 2>/dev/null && echo sys-writable;"
              " touch /newfile 2>/dev/null && echo rootfs-writable;"
              " echo tmp > /dev/shm/ok && cat /dev/shm/ok;"
              " echo hello > /dev/null && test -c /dev/ptmx && test -c /dev/urandom"
              " && grep -q ' /dev/mqueue mqueue ' /proc/mounts && echo dev-ok")
    r = cp.run(plan(uuid, sh(pod, "ro", script, readonly_rootfs=True)), pod)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["tmp", "dev-ok"]
    assert not (contract.app_rootfs(pod, "ro") / "newfile").exists()


def test_capabilities_bounding_set_and_no_new_privs(pods: Pods) -> None:
    uuid, pod = pods.pod("c")
    keep = ("CAP_NET_BIND_SERVICE", "CAP_KILL")
    app = sh(pod, "c", "grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status",
             capabilities=keep)
    r = cp.run(plan(uuid, app), pod)
    assert r.returncode == 0, r.stderr
    fields = dict(line.split(":\t") for line in r.stdout.splitlines())
    assert int(fields["CapBnd"], 16) == mask_of(keep)
    assert int(fields["CapEff"], 16) == mask_of(keep)
    assert fields["NoNewPrivs"] == "1"


def test_non_root_user_keeps_retained_caps(pods: Pods) -> None:
    uuid, pod = pods.pod("c")
    app = sh(pod, "c", "grep -E '^CapEff' /proc/self/status", uid=1000, gid=1000,
             capabilities=("CAP_NET_BIND_SERVICE",))
    r = cp.run(plan(uuid, app), pod)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[1], 16) == mask_of(("CAP_NET_BIND_SERVICE",))


def test_cgroup_limits_visible_to_the_app(pods: Pods) -> None:
    uuid, pod = pods.pod("m")
    script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
              " || cut -d' ' -f1 /sys/fs/cgroup/memory.max;"
              " cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null"
              " || cut -d' ' -f1 /sys/fs/cgroup/cpu.max;"
              " cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/cpu.weight")
    app = sh(pod, "m", script, memory_limit=42 * 1024 * 1024, cpu_limit_milli=500,
             cpu_shares=512)
    r = cp.run(plan(uuid, app), pod)
    assert r.returncode == 0, r.stderr
    shares = "512" if PodCgroups(uuid).layout.v1.get("cpu") else str(shares_to_weight(512))
    assert r.stdout.split() == [str(42 * 1024 * 1024), "50000", shares]
    assert not any(d.exists() for d in PodCgroups(uuid).pod_dirs()), "cgroups left behind"


@pytest.fixture
def nested_host_dir(tmp_path: Path) -> Iterator[Path]:
    """A host folder with a tmpfs mounted on a subfolder (unmounted afterwards)."""
    src = tmp_path / "vol"
    (src / "sub").mkdir(parents=True)
    (src / "top.txt").write_text("top\n")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(src / "sub")], check=True)
    try:
        (src / "sub" / "nested.txt").write_text("nested\n")
        yield src
    finally:
        subprocess.run(["umount", str(src / "sub")], check=True)


def test_host_volumes_read_only_and_recursive(pods: Pods, nested_host_dir: Path) -> None:
    uuid, pod = pods.pod("v")
    mounts = (
        MountPlan("rec", VolumeKind.HOST, nested_host_dir, "/rec", read_only=True),
        MountPlan("flat", VolumeKind.HOST, nested_host_dir, "/flat", recursive=False),
    )
    script = ("cat /rec/top.txt /rec/sub/nested.txt;"
              " touch /rec/new 2>/dev/null && echo rec-writable;"
              " touch /rec/sub/new 2>/dev/null && echo nested-writable;"
              " ls /flat/sub | wc -l; echo w > /flat/written")
    r = cp.run(plan(uuid, sh(pod, "v", script, mounts=mounts)), pod)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["top", "nested", "0"]
    assert (nested_host_dir / "written").read_text() == "w\n"
    assert not (nested_host_dir / "new").exists()


def test_empty_volume_starts_with_image_content(pods: Pods, tmp_path: Path) -> None:
    """A docker image's implicit volume (made by stage1.volumes when the pod starts)."""
    from pyrkt.stage1.volumes import make_implicit

    uuid, pod = pods.pod("e")
    data = contract.app_rootfs(pod, "e") / "data"
    data.mkdir()
    (data / "seed.txt").write_text("from-image\n")
    vol = pod / "volumes" / "e-cache"
    m = MountPlan("e-cache", VolumeKind.EMPTY, vol, "/data", implicit=True, seed=True)
    p = plan(uuid, sh(pod, "e", "cat /data/seed.txt; echo new > /data/new", mounts=(m,)))
    make_implicit(p)
    r = cp.run(p, pod)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "from-image\n"
    assert (vol / "new").read_text() == "new\n"


def _wait_running(pod: Path, proc: subprocess.Popen[str]) -> int:
    """Wait until the app printed 'ready' (it is running); the pod init's pid."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "ready\n", (line, proc.stderr.read() if proc.stderr else "")
    return int(contract.pid_file(pod).read_text())


def test_stop_enter_and_sigkill_leave_nothing(pods: Pods) -> None:
    # enter, then SIGTERM (stop): the app sees it; then a SIGKILLed pod leaves nothing.
    uuid, pod = pods.pod("s")
    loop = "trap 'echo got-term; exit 9' TERM; echo ready; while :; do sleep 0.05; done"
    app = sh(pod, "s", loop,
             env=(*cp.ENV, ("WHO", "inside")))
    proc = cp.start(plan(uuid, app, hostname="entered"), pod)
    try:
        init = _wait_running(pod, proc)
        enter = subprocess.run(
            [sys.executable, "-m", "pyrkt.stage1.container", "enter", f"--pid={init}",
             "--appname=s", "--", "/bin/sh", "-c", "echo $WHO $(hostname); exit 4"],
            cwd=pod, capture_output=True, text=True, timeout=30)
        assert (enter.returncode, enter.stdout) == (4, "inside entered\n"), enter.stderr
        subprocess.run([sys.executable, "-m", "pyrkt.stage1.container", "stop", uuid],
                       cwd=pod, check=True, timeout=30)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 9, err
        assert "got-term" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    uuid, pod = pods.pod("k")
    proc = cp.start(plan(uuid, sh(pod, "k", "echo ready; sleep 1000")), pod)
    try:
        init = _wait_running(pod, proc)
        in_pod = PodCgroups(uuid).pids()
        assert in_pod and init not in in_pod  # the app's processes; init is their parent
        in_pod.add(init)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{p}").exists() for p in in_pod) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(Path(f"/proc/{p}").exists() for p in in_pod), "pod processes survived"
    gc = subprocess.run([sys.executable, "-m", "pyrkt.stage1.container", "gc", uuid],
                        cwd=pod, capture_output=True, text=True, timeout=30)
    assert gc.returncode == 0, gc.stderr
    assert not any(d.exists() for d in PodCgroups(uuid).pod_dirs())
    assert str(pod) not in Path("/proc/self/mountinfo").read_text()


def test_missing_command_is_reported(pods: Pods) -> None:
    uuid, pod = pods.pod("bad")
    r = cp.run(plan(uuid, cp.app(pod, "bad", "/no/such/binary")), pod)
    assert r.returncode == 203  # rkt's (systemd's EXIT_EXEC), with rkt's diagnostic
    assert 'Error: Unable to open "/no/such/binary": No such file or directory' in r.stderr
    assert contract.read_exit_codes(pod, ["bad"]) == {"bad": 203}


def test_cgroup_v2_hierarchy_tracks_and_kills(tmp_path: Path) -> None:
    """The v2 code path on this hybrid host: the unified hierarchy, used alone."""
    v2 = Path("/sys/fs/cgroup/unified")
    if not (v2 / "cgroup.procs").exists():
        pytest.skip("no cgroup v2 hierarchy mounted")
    cg = PodCgroups(str(uuidlib.uuid4()), Layout(v1={}, v2=v2))
    assert cg.pod_dirs() == [v2 / "pyrkt" / cg.uuid]
    cg.create("app")
    sleeper = subprocess.Popen(["sleep", "1000"])
    try:
        cg.join("app", sleeper.pid)
        assert cg.pids() == {sleeper.pid}
        assert f"0::/pyrkt/{cg.uuid}/app" in Path(f"/proc/{sleeper.pid}/cgroup").read_text()
        cg.destroy()
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
        assert not (v2 / "pyrkt" / cg.uuid).exists()
    finally:
        sleeper.kill()
        sleeper.wait()
        cg.destroy()


def test_symlinks_in_the_image_stay_inside_the_rootfs(pods: Pods, tmp_path: Path) -> None:
    """An image whose /etc and /proc are symlinks pointing out of it must not make rkt
    write or mount on the host."""
    uuid, pod = pods.pod("evil")
    root = contract.app_rootfs(pod, "evil")
    outside = tmp_path / "outside"
    outside.mkdir()
    escape = "/.." * 20 + str(outside)
    subprocess.run(["rm", "-rf", str(root / "etc"), str(root / "proc")], check=True)
    os.symlink(escape, root / "etc")
    os.symlink(escape + "/proc", root / "proc")
    r = cp.run(plan(uuid, sh(pod, "evil", "cat /etc/hostname; test -f /proc/self/status"),
                    hostname="inside"), pod)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "inside\n"
    assert list(outside.iterdir()) == []
    assert (root / str(outside).lstrip("/") / "hostname").exists()


def test_fly_volumes_user_and_readonly_rootfs(pods: Pods, nested_host_dir: Path) -> None:
    uuid, pod = pods.pod("f")
    mounts = (MountPlan("ro", VolumeKind.HOST, nested_host_dir, "/ro", read_only=True),)
    script = ("cat /ro/top.txt; touch /ro/x 2>/dev/null || echo ro-refused;"
              " touch /x 2>/dev/null || echo rootfs-refused; id -u; echo $$ > /dev/null;"
              " test -e /proc/1/status && echo host-proc; exit 2")
    app = sh(pod, "f", script, mounts=mounts, uid=1000, gid=1000, readonly_rootfs=True)
    r = cp.run(plan(uuid, app), pod, flavor="fly")
    assert r.returncode == 2, r.stderr
    assert r.stdout.split() == ["top", "ro-refused", "rootfs-refused", "1000", "host-proc"]
    assert contract.read_exit_codes(pod, ["f"]) == {"f": 2}
    assert int(contract.pid_file(pod).read_text()) > 1


def test_apps_of_a_pod_share_localhost(pods: Pods) -> None:
    uuid, pod = pods.pod("server", "client")
    server = sh(pod, "server", "nc -l -p 7777 -e echo pong")
    client = sh(pod, "client", "for i in $(seq 50); do nc 127.0.0.1 7777 </dev/null && exit 0;"
                               " sleep 0.1; done; exit 1")
    r = cp.run(plan(uuid, server, client), pod)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "pong\n"


def test_default_seccomp_filter_and_its_opt_out(pods: Pods) -> None:
    """Even with CAP_SYS_ADMIN retained, the default filter refuses umount(2) and
    unshare(2); --insecure-options=seccomp (RunOptions(seccomp=False)) lifts it."""
    script = ("grep Seccomp: /proc/self/status; umount /proc/bus 2>/dev/null && echo umounted"
              " || echo umount-refused; unshare -m true 2>/dev/null && echo unshared"
              " || echo unshare-refused")
    caps = (*cp.RKT_DEFAULT_CAPS, "CAP_SYS_ADMIN")
    uuid, pod = pods.pod("s")
    r = cp.run(plan(uuid, sh(pod, "s", script, capabilities=caps)), pod)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["Seccomp:", "2", "umount-refused", "unshare-refused"]
    uuid, pod = pods.pod("s")
    r = cp.run(plan(uuid, sh(pod, "s", script, capabilities=caps)), pod,
               flavor="container-noseccomp")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["Seccomp:", "0", "umounted", "unshared"]
