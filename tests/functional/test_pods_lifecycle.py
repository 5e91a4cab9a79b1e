"""The pod lifecycle through the `rkt` command: run, status, list, prepare, stop, rm, gc.

Most tests use a tiny stage1 built here (its `run` runs each app of the planner's plan
with chroot and writes the exit codes), so that they test stage0 alone; one test runs
the real default (coreos) stage1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.acis import aci_manifest, stage1_annotations, tar_aci

pytestmark = pytest.mark.root

STAGE1_RUN = r"""#!/bin/sh
echo "$@" > stage1-args
echo $$ > pid
exec "$PYRKT_PYTHON" -c '
import os, signal, subprocess, sys
from pyrkt.stage1.planner import build_plan
try:
    os.setpgid(0, 0)
except OSError:
    pass  # already a session leader
signal.signal(signal.SIGTERM, lambda *a: os.killpg(0, signal.SIGKILL))
plan = build_plan(os.getcwd())
first = 0
os.makedirs("stage1/rootfs/rkt/status", exist_ok=True)
for app in plan.apps:
    cp = subprocess.run(["chroot", str(app.rootfs), *app.argv], env=dict(app.env))
    open("stage1/rootfs/rkt/status/" + app.name, "w").write(str(cp.returncode))
    first = first or cp.returncode
sys.exit(first)
'
"""
STAGE1_STOP = '#!/bin/sh\nkill -TERM "$(cat pid)"\n'
STAGE1_GC = '#!/bin/sh\necho "$@" > "../../../gc-called-$1"\n'  # cwd: DIR/pods/STATE/UUID




@pytest.fixture(scope="module")
def acis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("acis")
    app = base / "busybox"
    (app / "rootfs/bin").mkdir(parents=True)
    (app / "rootfs/etc").mkdir()
    shutil.copy(shutil.which("busybox") or "/bin/busybox", app / "rootfs/bin/busybox")
    for applet in ("sh", "env", "sleep", "cat", "true"):
        (app / "rootfs/bin" / applet).symlink_to("busybox")
    (app / "rootfs/etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (app / "rootfs/etc/group").write_text("root:x:0:\n")
    (app / "manifest").write_text(aci_manifest("example.com/busybox", {"app": {
        "exec": ["/bin/sh", "-c", "exit 5"], "user": "0", "group": "0",
        "environment": [{"name": "FROM_IMAGE", "value": "image"}],
    }}))  # fmt: skip
    s1 = base / "stage1"
    (s1 / "rootfs").mkdir(parents=True)
    for verb, text in (("run", STAGE1_RUN), ("stop", STAGE1_STOP), ("gc", STAGE1_GC),
                       ("enter", "#!/bin/sh\necho enter \"$@\"\n")):  # fmt: skip
        (s1 / "rootfs" / verb).write_text(text)
        (s1 / "rootfs" / verb).chmod(0o755)
    anns = stage1_annotations()
    (s1 / "manifest").write_text(aci_manifest("example.com/stage1-test", {"annotations": anns}))
    return {"app": tar_aci(app, base / "busybox.aci"), "stage1": tar_aci(s1, base / "stage1.aci")}


class Rkt:
    def __init__(self, d: Path, stage1: Path | None) -> None:
        self.dir = d
        self.stage1 = stage1
        self.procs: list[subprocess.Popen[str]] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pyrkt", f"--dir={self.dir}", "--insecure-options=image",
                *args]  # fmt: skip

    def s1(self) -> list[str]:
        return [f"--stage1-path={self.stage1}"] if self.stage1 else []

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        cp = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=120)
        print(f"$ rkt {' '.join(args)}\n-> {cp.returncode}\n{cp.stdout}{cp.stderr}")
        return cp

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self("run", *self.s1(), *args)

    def start(self, *args: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(self.argv("run", *self.s1(), *args), text=True,
                             start_new_session=True)  # fmt: skip
        self.procs.append(p)
        return p

    def status(self, uuid: str) -> dict[str, str]:
        cp = self("status", uuid)
        assert cp.returncode == 0, cp.stderr
        return dict(line.split("=", 1) for line in cp.stdout.splitlines())

    def cleanup(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        subprocess.run(self.argv("gc", "--grace-period=0s"), capture_output=True, check=False)


def mounts_under(d: Path) -> list[str]:
    return [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines()
            if f" {d}" in ln]  # fmt: skip


@pytest.fixture
def rkt(tmp_path: Path, acis: dict[str, Path]) -> Iterator[Rkt]:
    r = Rkt(tmp_path / "data", acis["stage1"])
    yield r
    r.cleanup()
    assert mounts_under(tmp_path) == []


def only_uuid(r: Rkt) -> str:
    uuids = [p.name for f in (r.dir / "pods").iterdir() for p in f.iterdir()]
    assert len(uuids) == 1
    return uuids[0]


def test_app_exit_code_is_rkts_and_status_shows_it(rkt: Rkt, acis: dict[str, Path]) -> None:
    cp = rkt.run("--kvm-accel=tcg", str(acis["app"]))
    assert cp.returncode == 5
    uuid = only_uuid(rkt)
    st = rkt.status(uuid[:8])
    assert st["state"] == "exited"
    assert st["exited"] == "true"
    assert st["app-busybox"] == "5"
    assert {"created", "started", "pid"} <= set(st)
    js = json.loads(rkt("status", "--format=json", uuid).stdout)
    assert js["name"] == uuid and js["state"] == "exited"
    assert js["apps"][0]["name"] == "busybox" and js["apps"][0]["exit_code"] == 5
    args = (rkt.dir / "pods/run" / uuid / "stage1-args").read_text().split()
    assert args[-1] == uuid and f"--hostname=rkt-{uuid}" in args and "--net=default" in args
    assert "--kvm-accel=tcg" in args  # flavor extension flags pass through


def test_list_columns_one_row_per_app(rkt: Rkt, acis: dict[str, Path]) -> None:
    app = str(acis["app"])
    assert rkt.run(app, "--name=one", "--exec=/bin/true", app, "--name=two",
                   "--exec=/bin/true").returncode == 0  # fmt: skip
    uuid = only_uuid(rkt)
    lines = rkt("list").stdout.splitlines()
    header = [c for c in lines[0].split("\t") if c]
    assert header == ["UUID", "APP", "IMAGE NAME", "STATE", "CREATED", "STARTED", "NETWORKS"]
    rows = [[c for c in ln.split("\t") if c] for ln in lines[1:]]
    assert [r[:4] for r in rows] == [
        [uuid[:8], "one", "example.com/busybox:1.0", "exited"],
        [uuid[:8], "two", "example.com/busybox:1.0", "exited"],
    ]
    assert rkt("list", "--no-legend", "--full").stdout.split("\t")[0] == uuid
    data = json.loads(rkt("list", "--format=json").stdout)
    assert data[0]["name"] == uuid and data[0]["app_names"] == ["one", "two"]
    assert rkt.status(uuid)["app-two"] == "0"


def test_env_flags_reach_the_app(rkt: Rkt, acis: dict[str, Path], tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=file\nOVER=file\n")
    cp = rkt.run(
        f"--set-env-file={env_file}", "--set-env=OVER=set", "--set-env=SET=set",
        str(acis["app"]), "--environment=OVER=app", "--exec=/bin/env",
    )  # fmt: skip
    assert cp.returncode == 0
    env = dict(line.split("=", 1) for line in cp.stdout.splitlines() if "=" in line)
    assert env["FROM_IMAGE"] == "image"
    assert env["FROM_FILE"] == "file"
    assert env["OVER"] == "app"
    assert env["SET"] == "set"
    assert env["AC_APP_NAME"] == "busybox"
    dup = rkt.run("--set-env=A=1", "--set-env=A=2", str(acis["app"]))
    assert dup.returncode == 254 and "more than once" in dup.stderr


def test_an_aci_file_rewritten_in_place_runs_what_it_holds_now(
        rkt: Rkt, acis: dict[str, Path], tmp_path: Path) -> None:
    """`rkt run FILE.aci` takes an unchanged file's image from the store without reading
    the file again (image.localaci); a file rewritten since with other content of the
    same size under its old mtime (only its ctime differs) runs its new app."""
    app = tmp_path / "app"
    shutil.copytree(acis["app"].parent / "busybox", app, symlinks=True)  # acis' tree

    def aci(code: int) -> bytes:
        m = json.loads((app / "manifest").read_text())
        m["app"]["exec"] = ["/bin/sh", "-c", f"exit {code}"]
        (app / "manifest").write_text(json.dumps(m))
        os.utime(app / "manifest", ns=(0, 0))
        return tar_aci(app, tmp_path / f"{code}.aci").read_bytes()

    first, second = aci(5), aci(6)
    assert len(first) == len(second)
    path = tmp_path / "app.aci"
    path.write_bytes(first)
    time.sleep(2.1)  # older than linux.files.SETTLE_NS: its identity is recorded
    for _ in range(2):  # the second run takes it from the store's index
        assert rkt.run(str(path)).returncode == 5
    st = path.stat()
    path.write_bytes(second)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert rkt.run(str(path)).returncode == 6


def test_rm_of_unknown_uuid(rkt: Rkt) -> None:
    cp = rkt("rm", "deadbeef")
    assert cp.returncode == 254
    assert 'no matches found for "deadbeef"' in cp.stderr


def test_app_flag_before_image_is_refused(rkt: Rkt, acis: dict[str, Path]) -> None:
    cp = rkt.run("--exec=/bin/true", str(acis["app"]))
    assert cp.returncode == 254
    assert "--exec must follow an image" in cp.stderr


def test_prepare_run_prepared_rm(rkt: Rkt, acis: dict[str, Path], tmp_path: Path) -> None:
    uuid_file = tmp_path / "uuid"
    cp = rkt("prepare", *rkt.s1(), f"--uuid-file-save={uuid_file}", str(acis["app"]),
             "--exec=/bin/sh", "--", "-c", "exit 7")  # fmt: skip
    assert cp.returncode == 0
    uuid = cp.stdout.strip()
    assert uuid_file.read_text().strip() == uuid
    assert rkt.status(uuid)["state"] == "prepared"
    assert rkt("run-prepared", uuid[:10]).returncode == 7
    assert rkt.status(uuid)["app-busybox"] == "7"
    cp = rkt("rm", uuid)
    assert cp.returncode == 0 and uuid in cp.stdout
    assert rkt("status", uuid).returncode == 254
    assert not any((rkt.dir / "pods").glob(f"*/{uuid}"))


def test_prepare_quiet_prints_only_the_uuid(rkt: Rkt, acis: dict[str, Path]) -> None:
    cp = rkt("prepare", "--quiet", *rkt.s1(), str(acis["app"]))
    assert cp.returncode == 0, cp.stderr
    uuid = cp.stdout.strip()
    assert cp.stdout == uuid + "\n"
    assert rkt.status(uuid)["state"] == "prepared"
    assert rkt("rm", uuid).returncode == 0


def _wait_running(rkt: Rkt, uuid_file: Path) -> str:
    for _ in range(400):
        if uuid_file.exists() and uuid_file.read_text().strip():
            break
        time.sleep(0.05)
    uuid = uuid_file.read_text().strip()
    cp = rkt("status", "--wait-ready=20s", uuid)
    assert cp.returncode == 0
    return uuid


def test_gc_stop_and_sigkill(rkt: Rkt, acis: dict[str, Path], tmp_path: Path) -> None:
    app = str(acis["app"])
    assert rkt.run(app, "--exec=/bin/true").returncode == 0
    exited = only_uuid(rkt)
    uf1, uf2 = tmp_path / "u1", tmp_path / "u2"
    p1 = rkt.start(f"--uuid-file-save={uf1}", app, "--exec=/bin/sleep", "--", "60")
    running = _wait_running(rkt, uf1)
    assert rkt.status(running)["state"] == "running"

    gc = rkt("gc", "--grace-period=0s")
    assert gc.returncode == 0 and exited in gc.stdout
    assert not any((rkt.dir / "pods").glob(f"*/{exited}"))
    assert rkt.status(running)["state"] == "running"

    # stop goes through the stage1's stop entrypoint
    cp = rkt("stop", running[:8])
    assert cp.returncode == 0 and running in cp.stdout
    p1.wait(timeout=30)
    assert rkt.status(running)["state"] == "exited"

    # SIGKILL of the stage1: the pod is exited by itself, gc leaves nothing behind
    p2 = rkt.start(f"--uuid-file-save={uf2}", app, "--exec=/bin/sleep", "--", "60")
    killed = _wait_running(rkt, uf2)
    os.kill(int(rkt.status(killed)["pid"]), signal.SIGKILL)
    p2.wait(timeout=30)
    assert p2.returncode == -signal.SIGKILL
    assert rkt.status(killed)["state"] == "exited"
    os.killpg(p2.pid, signal.SIGKILL)  # the orphaned app
    assert rkt("gc", "--grace-period=0s").returncode == 0
    assert rkt("list", "--no-legend").stdout.strip() == ""
    assert mounts_under(rkt.dir) == []


def test_gc_mark_only_and_grace_period(rkt: Rkt, acis: dict[str, Path]) -> None:
    assert rkt.run(str(acis["app"]), "--exec=/bin/true").returncode == 0
    uuid = only_uuid(rkt)
    assert rkt("gc", "--mark-only").returncode == 0
    assert rkt.status(uuid)["state"] == "exited garbage"
    assert rkt("gc").returncode == 0  # default grace period: 30 minutes
    assert rkt.status(uuid)["state"] == "exited garbage"
    assert rkt("gc", "--grace-period=0s").returncode == 0
    assert rkt("status", uuid).returncode == 254
    assert (rkt.dir / f"gc-called-{uuid}").read_text().split() == [uuid]


def test_pod_manifest_and_status_wait(rkt: Rkt, acis: dict[str, Path], tmp_path: Path) -> None:
    image_id = rkt("fetch", str(acis["app"])).stdout.strip()
    pm = tmp_path / "pod.json"
    pm.write_text(json.dumps({
        "acVersion": "0.8.11", "acKind": "PodManifest",
        "apps": [{"name": "pm", "image": {"name": "example.com/busybox", "id": image_id},
                  "app": {"exec": ["/bin/sh", "-c", "sleep 1; exit 9"], "user": "0",
                          "group": "0"}}],
    }))  # fmt: skip
    conflict = rkt.run(f"--pod-manifest={pm}", str(acis["app"]))
    assert conflict.returncode == 254
    assert "conflicting flags set with --pod-manifest (see --help)" in conflict.stderr
    uf = tmp_path / "uuid"
    p = rkt.start(f"--uuid-file-save={uf}", f"--pod-manifest={pm}")
    uuid = _wait_running(rkt, uf)
    cp = rkt("status", "--wait", uuid)
    assert cp.returncode == 0
    assert "state=exited" in cp.stdout.splitlines() and "app-pm=9" in cp.stdout.splitlines()
    assert p.wait(timeout=30) == 9


def test_default_stage1_runs_the_app(tmp_path: Path, acis: dict[str, Path]) -> None:
    r = Rkt(tmp_path / "data", None)
    try:
        cp = r.run("--net=host", str(acis["app"]), "--exec=/bin/sh", "--", "-c", "exit 3")
        assert cp.returncode == 3
        uuid = only_uuid(r)
        assert r.status(uuid)["app-busybox"] == "3"
        assert mounts_under(tmp_path) == []
    finally:
        r.cleanup()


def test_export_keeps_what_the_app_wrote(rkt: Rkt, acis: dict[str, Path], tmp_path: Path) -> None:
    cp = rkt.run(str(acis["app"]), "--exec=/bin/sh", "--", "-c", "echo changed > /newfile")
    assert cp.returncode == 0
    uuid = only_uuid(rkt)
    out = tmp_path / "out.aci"
    assert rkt("export", uuid, str(out)).returncode == 0
    listing = subprocess.run(["tar", "-tf", str(out)], capture_output=True, text=True).stdout
    assert "manifest" in listing.split() and "rootfs/bin/busybox" in listing.split()
    content = subprocess.run(["tar", "-xOf", str(out), "rootfs/newfile"], capture_output=True,
                             text=True).stdout  # fmt: skip
    assert content == "changed\n"
    again = rkt("export", uuid, str(out))
    assert again.returncode == 254 and "already exists" in again.stderr


def test_enter_calls_the_stage1_enter(rkt: Rkt, acis: dict[str, Path], tmp_path: Path) -> None:
    uf = tmp_path / "uuid"
    rkt.start(f"--uuid-file-save={uf}", str(acis["app"]), "--exec=/bin/sleep", "--", "60")
    uuid = _wait_running(rkt, uf)
    pid = rkt.status(uuid)["pid"]
    cp = rkt("enter", uuid[:8], "/bin/echo", "hi")
    assert cp.returncode == 0
    assert cp.stdout.split() == ["enter", f"--pid={pid}", "--appname=busybox", "--",
                                 "/bin/echo", "hi"]  # fmt: skip
    assert rkt("enter", "--app=nope", uuid).returncode == 254
    assert rkt("stop", uuid).returncode == 0


def test_stage1_selection(rkt: Rkt, acis: dict[str, Path], tmp_path: Path) -> None:
    app = str(acis["app"])
    sysconf = tmp_path / "sys"
    (sysconf / "stage1-images").mkdir(parents=True)
    shutil.copy(acis["stage1"], sysconf / "stage1-images" / "test.aci")
    rkt.stage1 = None
    g = f"--system-config={sysconf}"
    assert rkt(g, "run", "--stage1-from-dir=test.aci", app).returncode == 5
    image_id = rkt("fetch", str(acis["stage1"])).stdout.strip()
    assert image_id.startswith("sha512-")
    assert rkt("run", f"--stage1-hash={image_id}", app).returncode == 5
    assert rkt("run", "--stage1-name=example.com/stage1-test:1.0", app).returncode == 5
    both = rkt("run", f"--stage1-path={acis['stage1']}", f"--stage1-hash={image_id}", app)
    assert both.returncode == 254 and "mutually exclusive" in both.stderr
    not_s1 = rkt("run", f"--stage1-path={acis['app']}", app)
    assert not_s1.returncode == 254 and "is not a stage1" in not_s1.stderr
    # a configured default (stage1.d) instead of the built-in coreos flavor
    local = tmp_path / "local"
    (local / "stage1.d").mkdir(parents=True)
    (local / "stage1.d" / "test.json").write_text(json.dumps({
        "rktKind": "stage1", "rktVersion": "v1", "name": "example.com/nothing",
        "version": "1", "location": str(acis["stage1"])}))  # fmt: skip
    assert rkt(f"--local-config={local}", "run", app).returncode == 5
    for pod in rkt.dir.glob("pods/run/*"):
        assert (pod / "stage1-args").exists()  # every pod ran the test stage1


def test_no_overlay_copies_trees(rkt: Rkt, acis: dict[str, Path]) -> None:
    cp = rkt.run("--no-overlay", str(acis["app"]), "--exec=/bin/sh", "--", "-c", "exit 4")
    assert cp.returncode == 4
    uuid = only_uuid(rkt)
    pod = rkt.dir / "pods/run" / uuid
    assert (pod / "stage1/rootfs/opt/stage2/busybox/rootfs/bin/busybox").is_file()
    assert rkt.status(uuid)["app-busybox"] == "4"


def test_root_verbs_refuse_other_users(rkt: Rkt, acis: dict[str, Path]) -> None:
    # the interpreter lives under /root: load everything, then drop the effective uid
    script = (
        "import os, sys, pyrkt.cli.run, pyrkt.cli.pods\n"
        "from pyrkt.cli.main import main\n"
        "os.setegid(65534); os.seteuid(65534)\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    for verb in (["run", str(acis["app"])], ["rm", "x"], ["gc"], ["stop", "x"]):
        cp = subprocess.run([sys.executable, "-c", script, f"--dir={rkt.dir}", *verb],
                            capture_output=True, text=True)  # fmt: skip
        assert cp.returncode == 254, verb
        assert "cannot run as unprivileged user" in cp.stderr


def test_volumes_with_default_stage1(tmp_path: Path, acis: dict[str, Path]) -> None:
    """An image mount point with no volume gets an empty volume of its own, seeded from
    the image when the image came from docker (docker semantics, as rkt); a read-only
    host volume refuses writes."""
    src = tmp_path / "vol"
    subprocess.run(["tar", "-C", str(src.parent), "--one-top-level=vol", "-xf",
                    str(acis["app"])], check=True)  # fmt: skip
    (src / "rootfs/data").mkdir()
    (src / "rootfs/data/file").write_text("seeded\n")
    m = json.loads((src / "manifest").read_text())
    m["name"] = "example.com/vol"
    m["annotations"] = [{"name": "appc.io/docker/repository", "value": "example.com/vol"}]
    m["app"]["mountPoints"] = [{"name": "data", "path": "/data"}]
    m["app"]["exec"] = ["/bin/sh", "-c", "cat /data/file && echo more >> /data/file"]
    (src / "manifest").write_text(json.dumps(m))
    aci = tar_aci(src, tmp_path / "vol.aci")
    host = tmp_path / "host"
    host.mkdir()
    (host / "file").write_text("from host\n")
    r = Rkt(tmp_path / "data", None)
    try:
        cp = r.run("--net=host", str(aci))
        assert cp.returncode == 0 and cp.stdout == "seeded\n"
        assert "implicitly creating" in cp.stderr
        cp = r.run("--net=host", f"--volume=data,kind=host,source={host},readOnly=true",
                   str(aci))  # fmt: skip
        assert cp.stdout == "from host\n"
        assert cp.returncode != 0 and "Read-only file system" in cp.stderr
        assert (host / "file").read_text() == "from host\n"
    finally:
        r.cleanup()
    assert mounts_under(tmp_path) == []


def test_interactive_gets_a_terminal(tmp_path: Path, acis: dict[str, Path]) -> None:
    import pexpect

    r = Rkt(tmp_path / "data", None)
    argv = r.argv("run", "--interactive", "--net=host", str(acis["app"]), "--exec=/bin/sh")
    child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", timeout=60)
    try:
        child.sendline("[ -t 0 ] && echo is-a-tty; echo $((6*7)); exit 3")
        child.expect("is-a-tty")
        child.expect("42")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 3
        two = r.run("--interactive", str(acis["app"]), str(acis["app"]), "--name=b")
        assert two.returncode == 254 and "one image" in two.stderr
    finally:
        child.close(force=True)
        r.cleanup()


@pytest.mark.registry
def test_run_docker_image_from_registry(tmp_path: Path, busybox_image: str) -> None:
    r = Rkt(tmp_path / "data", None)
    try:
        cp = r("--insecure-options=image,http", "run", "--net=host", busybox_image,
               "--exec=/bin/sh", "--", "-c", "echo from-docker; exit 6")  # fmt: skip
        assert cp.returncode == 6 and "from-docker" in cp.stdout
        uuid = only_uuid(r)
        assert r.status(uuid)["app-busybox"] == "6"
        row = [c for c in r("list", "--no-legend").stdout.split("\t") if c]
        assert row[1] == "busybox"
    finally:
        r.cleanup()


def test_gc_aborted_and_expired_prepared_pods(rkt: Rkt, acis: dict[str, Path]) -> None:
    from pyrkt.pod import pods

    aborted = pods.create(rkt.dir)  # a prepare that died: folder in prepare/, unlocked
    aborted.close()
    assert rkt.status(aborted.uuid)["state"] == "aborted prepare"
    cp = rkt("prepare", *rkt.s1(), str(acis["app"]))
    prepared = cp.stdout.strip()
    assert rkt("gc", "--grace-period=0s").returncode == 0
    assert rkt("status", aborted.uuid).returncode == 254
    assert rkt.status(prepared)["state"] == "prepared"  # not expired yet (24h)
    assert rkt("gc", "--grace-period=0s", "--expire-prepared=0s").returncode == 0
    assert rkt("status", prepared).returncode == 254


def test_gc_removes_stale_embryos_only(rkt: Rkt, acis: dict[str, Path]) -> None:
    from pyrkt.pod import pods

    pods.create(rkt.dir).close()  # the pods folder layout, as any `rkt run` leaves it
    embryo = rkt.dir / "pods" / "embryo"
    stale = embryo / "0badc0de-0000-4000-8000-000000000001"
    fresh = embryo / "0badc0de-0000-4000-8000-000000000002"
    stale.mkdir()
    fresh.mkdir()
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert rkt("gc", "--grace-period=0s").returncode == 0
    assert not stale.exists()  # left by a rkt that died before locking it
    assert fresh.exists()  # may be a pod being created right now
