"""rkt-runtime's rules without VMs: config.json -> PodPlan, refusals, the state JSON,
signals, features, and the guest command lines the rules turn into."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyrkt.errors import RktError
from pyrkt.oci import filebind
from pyrkt.oci import plan as oplan
from pyrkt.oci.container import parse_signal
from pyrkt.oci.features import features
from pyrkt.oci.spec import SpecError, parse_spec
from pyrkt.oci.state import State, Status, Store, check_id
from pyrkt.stage1.kvm.guest import script
from pyrkt.stage1.kvm.hypervisors.qemu import Qemu
from pyrkt.stage1.kvm.vm import Accel, ConsoleMode, VmPlan


def config(**over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "process": {"args": ["sh", "-c", "true"], "cwd": "/", "env": ["PATH=/bin"],
                    "user": {"uid": 0, "gid": 0}},
        "hostname": "h1",
    }
    c.update(over)
    return c


def planned(tmp_path: Path, **over: Any) -> oplan.ContainerPlan:
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    spec = parse_spec(config(**over), tmp_path)
    return oplan.container_plan(spec, "c1", tmp_path / "state" / "pod")


def test_process_becomes_the_app(tmp_path: Path) -> None:
    p = planned(tmp_path, process={
        "args": ["httpd", "-f"], "cwd": "/www", "env": ["A=1", "PATH=/bin", "B=x=y"],
        "user": {"uid": 1000, "gid": 100, "additionalGids": [5, 6], "umask": 0o27},
        "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"], "permitted": ["CAP_KILL"]},
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}],
        "noNewPrivileges": True, "oomScoreAdj": 5,
    })
    app = p.pod.apps[0]
    assert (app.argv, app.working_dir, app.uid, app.gid) == (("httpd", "-f"), "/www", 1000, 100)
    assert app.supplementary_gids == (5, 6)
    assert dict(app.env) == {"A": "1", "PATH": "/bin", "B": "x=y"}
    assert app.capabilities == ("CAP_KILL",)  # the permitted set
    assert [(r.resource, r.soft, r.hard) for r in app.rlimits] == [(7, 1024, 4096)]
    assert app.umask == 0o27 and app.no_new_privs and app.oom_score_adj == 5
    assert p.pod.hostname == "h1" and p.pod.net == "none" and not p.terminal
    line = script.exec_line(app)
    assert "RKT_RLIMITS=7:1024:4096" in line and "RKT_UMASK=0027" in line
    assert " 5 " in line.split("rkt-exec", 1)[1]  # CAP_KILL is number 5


def test_no_capabilities_means_none_not_all(tmp_path: Path) -> None:
    app = planned(tmp_path).pod.apps[0]
    assert script.cap_arg(app.capabilities) == "-"  # rkt-exec drops every capability


def test_resources_size_the_vm(tmp_path: Path) -> None:
    from pyrkt.stage1.kvm.sizing import vm_size

    p = planned(tmp_path, linux={"resources": {
        "memory": {"limit": 512 * 1024 * 1024},
        "cpu": {"quota": 150000, "period": 100000, "shares": 512}}})
    app = p.pod.apps[0]
    assert (app.memory_limit, app.cpu_limit_milli, app.cpu_shares) == (512 << 20, 1500, 512)
    size = vm_size(p.pod.apps, host_cpus=8)
    assert (size.memory_mib, size.vcpus) == (512 + 128, 2)  # the seed's rule


def test_vm_size_annotation_passes_through(tmp_path: Path) -> None:
    from pyrkt.stage1.kvm.sizing import vm_size

    p = planned(tmp_path, annotations={"coreos.com/rkt/stage1/kvm/memory": "1Gi"})
    assert vm_size(p.pod.apps, 2, p.pod.annotations, 4096).memory_mib == 1024


def test_mount_rules(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    hosts = tmp_path / "hosts"
    hosts.write_text("10.0.0.1 x\n")
    env = tmp_path / "containerenv"
    env.write_text("")
    p = planned(tmp_path, mounts=[
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/dev/shm", "type": "bind", "source": str(data), "options": ["bind"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"},
        {"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind", "ro"]},
        {"destination": "/etc/hosts", "type": "bind", "source": str(hosts), "options": ["bind"]},
        {"destination": "/run/.containerenv", "type": "bind", "source": str(env),
         "options": ["bind"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs"},
    ])
    mounts = p.pod.apps[0].mounts
    assert [(m.target, m.kind.value, m.read_only) for m in mounts] == [
        ("/data", "host", True), ("/scratch", "empty", False)]
    assert p.etc_files == (("hosts", "10.0.0.1 x\n"),)
    assert p.empty_dirs == (tmp_path / "state" / "pod" / "volumes" / "v1",)
    assert any("/run/.containerenv" in n for n in p.notes)


@pytest.mark.parametrize(("over", "words"), [
    ({"mounts": [{"destination": "/x", "type": "overlay", "source": "o"}]}, "mount type"),
    ({"mounts": [{"destination": "/other/proc", "type": "proc", "source": "proc"}]}, "proc"),
    ({"hooks": {"prestart": [{"path": "/bin/true"}]}}, "hooks"),
    ({"linux": {"namespaces": [{"type": "user"}]}}, "user namespaces"),
    ({"linux": {"uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}},
     "user namespaces"),
    ({"process": {"args": []}}, "process.args"),
    ({"process": {"args": ["x"], "user": {"uid": "0"}}}, "process.user.uid"),
    ({"process": {"args": ["x"], "rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1,
                                              "hard": 1}]}}, "RLIMIT_BOGUS"),
    ({"mounts": [{"destination": "relative", "type": "bind", "source": "/"}]}, "absolute"),
])
def test_refused_with_the_key_named(tmp_path: Path, over: dict[str, Any], words: str) -> None:
    with pytest.raises(SpecError, match=words):
        planned(tmp_path, **over)


def file_bind(f: Path, *opts: str) -> dict[str, Any]:
    return {"destination": "/opt/f", "type": "bind", "source": str(f),
            "options": ["bind", *opts]}


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Path]:
    """A folder on another file system than tmp_path (/dev/shm), removed afterwards."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a file system of its own")
    d = shm / f"pyrkt-test-{tmp_path.name}"
    d.mkdir()
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_single_file_bind_is_the_users_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    p = planned(tmp_path, mounts=[file_bind(f)])
    (m,) = p.pod.apps[0].mounts
    assert (m.target, m.kind.value, m.read_only) == ("/opt/f", "host", False)
    (fb,) = p.file_binds
    assert fb.staged == m.source and m.source.parent.parent == tmp_path / "state" / "pod"
    assert filebind.stage(fb) is None
    assert m.source.samefile(f)  # a hard link: what the app writes lands in f
    assert not p.notes


def test_read_only_file_on_another_fs_is_copied(tmp_path: Path, elsewhere: Path) -> None:
    f = elsewhere / "conf"
    f.write_text("setting=1\n")
    f.chmod(0o640)
    p = planned(tmp_path, mounts=[file_bind(f, "ro")])
    (fb,) = p.file_binds
    note = filebind.stage(fb)
    assert note is not None and "copy" in note and str(f) in note
    assert fb.staged.read_text() == "setting=1\n" and not fb.staged.samefile(f)
    assert fb.staged.stat().st_mode & 0o777 == 0o640
    fb.staged.unlink()
    fb.staged.symlink_to(tmp_path / "victim")  # the copy is never written through one
    filebind.stage(fb)
    assert not (tmp_path / "victim").exists() and not fb.staged.is_symlink()
    assert fb.staged.read_text() == "setting=1\n"


def test_read_only_copy_is_bounded(tmp_path: Path, elsewhere: Path) -> None:
    f = elsewhere / "big"
    with open(f, "wb") as out:
        out.truncate(oplan.MAX_FILE_COPY + 1)
    (fb,) = planned(tmp_path, mounts=[file_bind(f, "ro")]).file_binds
    with pytest.raises(SpecError, match="larger than"):
        filebind.stage(fb)


def test_read_write_file_on_another_fs_is_refused(tmp_path: Path, elsewhere: Path) -> None:
    f = elsewhere / "data"
    f.write_text("x")
    (fb,) = planned(tmp_path, mounts=[file_bind(f, "rw")]).file_binds
    with pytest.raises(SpecError, match=r"mounts\[0\] \(/opt/f\): cannot bind the file .* "
                       "read-write") as e:
        filebind.stage(fb)
    assert e.value.hint is not None and "same file system" in e.value.hint
    assert not fb.staged.exists()


def test_fifo_source_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for dest in ("/opt/f", "/etc/hosts"):  # never opened (that would block)
        with pytest.raises(SpecError, match=r"is a FIFO, not a file or a folder"):
            planned(tmp_path, mounts=[{**file_bind(fifo), "destination": dest}])


def test_namespaces(tmp_path: Path) -> None:
    p = planned(tmp_path, linux={"namespaces": [
        {"type": "network", "path": "/run/netns/cni-1"}, {"type": "ipc", "path": "/proc/1/ns/ipc"},
        {"type": "pid"}], "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}})
    assert p.netns == Path("/run/netns/cni-1")
    assert any("ipc namespace" in n for n in p.notes)
    assert any(n.startswith("linux.seccomp") for n in p.notes)
    assert planned(tmp_path).netns is None


def test_cri_sandbox_is_recognized(tmp_path: Path) -> None:
    p = planned(tmp_path, annotations={"io.kubernetes.cri.container-type": "sandbox"})
    assert p.sandbox
    assert not planned(tmp_path, annotations={
        "io.kubernetes.cri.container-type": "container"}).sandbox


def test_terminal_console_has_no_escape_and_no_monitor() -> None:
    vp = VmPlan(kernel=Path("/k"), initrd=Path("/i"), cmdline=(), vcpus=1, memory_mib=256,
                accel=Accel.TCG, console=ConsoleMode.TERMINAL, serial_log=Path("s.log"))
    argv = Qemu().argv(vp)
    assert "stdio,id=con,signal=off" in argv
    assert "-mon" not in argv and not any("mux=on" in a for a in argv)


@pytest.mark.parametrize(("text", "num"), [("TERM", 15), ("SIGKILL", 9), ("9", 9),
                                           ("sigusr1", int(signal.SIGUSR1))])
def test_signals(text: str, num: int) -> None:
    assert parse_signal(text) == num


@pytest.mark.parametrize("text", ["BOGUS", "0", "999", "SIG", "-1"])
def test_bad_signals(text: str) -> None:
    with pytest.raises(RktError, match="unknown signal"):
        parse_signal(text)


@pytest.mark.parametrize("cid", ["", "a/b", "..", "a b", "x\n"])
def test_bad_ids(cid: str) -> None:
    with pytest.raises(RktError, match="invalid container id"):
        check_id(cid)


def test_state_json_and_status(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.make("c1")
    st = State(id="c1", bundle="/b", rootfs="/b/rootfs", created="2026-01-01T00:00:00.0Z",
               annotations={"a": "b"})
    store.save(st)
    assert store.status(store.load("c1")) is Status.CREATING
    import os

    from pyrkt.oci.state import proc_start

    me = State(**{**store.load("c1").__dict__, "pid": os.getpid(),
                  "pid_start": proc_start(os.getpid())[0]})  # type: ignore[index]
    (tmp_path / "c1" / "exec.fifo").touch()
    assert store.status(me) is Status.CREATED
    (tmp_path / "c1" / "exec.fifo").unlink()
    assert store.status(me) is Status.RUNNING
    reused = State(**{**me.__dict__, "pid_start": 1})
    assert store.status(reused) is Status.STOPPED
    doc = store.oci_state(me)
    assert set(doc) == {"ociVersion", "id", "pid", "status", "bundle", "rootfs", "created",
                        "owner", "annotations"}
    assert doc["pid"] == os.getpid() and doc["annotations"] == {"a": "b"}
    assert store.oci_state(reused)["pid"] == 0


def test_features_document() -> None:
    f = json.loads(json.dumps(features()))
    assert f["ociVersionMin"] == "1.0.0" and f["hooks"] == []
    assert "CAP_SYS_ADMIN" in f["linux"]["capabilities"]
    assert f["annotations"]["io.github.pyrkt.runtime.isolation"] == "vm"
