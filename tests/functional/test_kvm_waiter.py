"""rkt-wait, what the kvm runner becomes while the VM runs: built from its C source like
a stage1 image builds it, and run with a plain child process standing in for QEMU (same
contract: it is rkt-wait's child, the guest's exit codes are files in the pod)."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pyrkt.stage1 import contract
from pyrkt.stage1.kvm import assets, waiter

pytestmark = pytest.mark.skipif(
    subprocess.run(["sh", "-c", "command -v gcc"], capture_output=True).returncode != 0,
    reason="needs gcc (scripts/setup.sh installs it)",
)


@pytest.fixture(scope="module")
def rkt_wait(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return assets.cached_waiter(tmp_path_factory.mktemp("cache"))


LAUNCH = """
import json, os, signal, sys
rkt_wait, child, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
spec["pid"] = pid = os.spawnvp(os.P_NOWAIT, "sh", ["sh", "-c", child])
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP})  # as the runner
if len(sys.argv) > 4:
    os.environ["RKT_WAIT_FAST_BENEATH"] = "\\n".join(sys.argv[4:])
os.execv(rkt_wait, [rkt_wait, str(pid), sys.executable, spec.pop("waiter"), json.dumps(spec)])
"""


MEMORY_LIMIT = 1 << 30  # address space: reading /dev/zero or a huge file whole fails


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def start(rkt_wait: Path, pod: Path, apps: list[str], child: str,
          fast: bool = False, rmdir: tuple[Path, ...] = ()) -> subprocess.Popen[str]:
    """A process that starts `child` (the hypervisor's stand-in), then becomes rkt-wait:
    the child's parent, as the runner is QEMU's. fast: with the fast path's arguments
    (RKT_WAIT_FAST_BENEATH: agent socket, stage1 rootfs, apps), as the runner sets it
    without --debug. 1 GiB of address space, as a bound to check."""
    spec = json.dumps({"pod": str(pod), "apps": apps, "net": False, "debug": not fast,
                       "waiter": str(waiter.__file__)})
    extra = [str(pod / "kvm/agent.sock"), str(contract.stage1_rootfs(pod)), *apps] if fast else []
    env = dict(os.environ, RKT_WAIT_RMDIR="\n".join(map(str, rmdir))) if rmdir else None
    return subprocess.Popen([sys.executable, "-c", LAUNCH, str(rkt_wait), child, spec, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_limit_memory)


def test_exit_code_is_the_first_failing_apps(rkt_wait: Path, tmp_path: Path) -> None:
    status = contract.status_dir(tmp_path)
    status.mkdir(parents=True)
    (status / "a").write_text("0\n")
    (status / "b").write_text("5\n")
    p = start(rkt_wait, tmp_path, ["a", "b"], "true")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 5, err
    assert "app exit codes {'a': 0, 'b': 5}" in err  # --debug: Python finished the pod


def test_fast_path_exit_code_without_python(rkt_wait: Path, tmp_path: Path) -> None:
    status = contract.status_dir(tmp_path)
    status.mkdir(parents=True)
    (status / "a").write_text("0\n")
    (status / "b").write_text("7\n")
    (status / "c").write_text("9\n")
    sock = tmp_path / "kvm/agent.sock"
    sock.parent.mkdir()
    sock.write_text("")
    p = start(rkt_wait, tmp_path, ["a", "b", "c"], "true", fast=True)
    _, err = p.communicate(timeout=120)
    assert (p.returncode, err) == (7, "")
    assert not sock.exists()  # removed, as finish_pod does


def test_the_hypervisors_cgroups_are_removed_once_it_exited(rkt_wait: Path,
                                                             tmp_path: Path) -> None:
    """RKT_WAIT_RMDIR (the runner's: leaf first), on the fast path and on Python's."""
    for fast, code in ((True, "0"), (False, "4")):
        pod = tmp_path / f"pod-{fast}"
        status = contract.status_dir(pod)
        status.mkdir(parents=True)
        (status / "a").write_text(code + "\n")
        group = pod / "cg/pod"
        (group / "leaf").mkdir(parents=True)
        (pod / "kvm").mkdir()
        p = start(rkt_wait, pod, ["a"], "true", fast=fast, rmdir=(group / "leaf", group))
        _, err = p.communicate(timeout=120)
        assert p.returncode == int(code), err
        assert not group.exists()


def test_fast_path_leaves_a_failure_to_python(rkt_wait: Path, tmp_path: Path) -> None:
    p = start(rkt_wait, tmp_path, ["a"], "exit 3", fast=True)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 254
    assert "before app(s) a finished" in err


def test_vm_gone_before_an_app_finished_is_an_error(rkt_wait: Path, tmp_path: Path) -> None:
    p = start(rkt_wait, tmp_path, ["a"], "exit 3")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 254
    assert "before app(s) a finished" in err


def test_sigterm_without_apps_stops_the_hypervisor(rkt_wait: Path, tmp_path: Path) -> None:
    p = start(rkt_wait, tmp_path, [], "exec sleep 600")
    # rkt-wait is running once its /proc/PID/exe is the binary (the sh has exec'd).
    for _ in range(600):
        try:
            if Path(f"/proc/{p.pid}/exe").resolve() == rkt_wait.resolve():
                break
        except OSError:
            pass
        try:
            p.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err  # no app, nothing failed
    assert "hypervisor exited with killed by SIGTERM" in err or "SIGTERM" in err, err


# ---- a hostile guest's status files; a hypervisor killed by a signal -----------------


def _plant(kind: str, status: Path, host: Path) -> None:
    """What a guest leaves as rkt/status/a (status: the stage1 rootfs's rkt/status)."""
    (host / "status").mkdir(parents=True)
    (host / "status" / "a").write_text("7\n")
    if kind == "link-to-host-file":
        (status / "a").symlink_to(host / "status" / "a")
    elif kind == "link-to-dev-zero":
        (status / "a").symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(status / "a")
    elif kind == "huge-file":
        with open(status / "a", "wb") as f:
            f.write(b"7")
            f.truncate(16 << 30)  # sparse
    elif kind == "symlinked-folder":
        (status / "b").rename(host / "status" / "b")
        status.rmdir()
        status.symlink_to(host / "status")


@pytest.mark.parametrize("fast", [True, False], ids=["rkt-wait", "python"])
@pytest.mark.parametrize("kind", ["link-to-host-file", "link-to-dev-zero", "fifo",
                                  "huge-file", "symlinked-folder"])
def test_a_planted_status_file_is_refused(rkt_wait: Path, tmp_path: Path, kind: str,
                                          fast: bool) -> None:
    pod = tmp_path / "pod"
    status = contract.status_dir(pod)
    status.mkdir(parents=True)
    (status / "b").write_text("0\n")
    (pod / "kvm").mkdir()
    _plant(kind, status, tmp_path / "host")
    p = start(rkt_wait, pod, ["a", "b"], "true", fast=fast)
    _, err = p.communicate(timeout=120)  # a FIFO read would wait forever
    assert p.returncode == 254, err  # not 7, read through the link, nor 0
    assert "app a: exit status refused" in err, err
    assert len([ln for ln in err.splitlines() if not ln.startswith("stage1: kvm:")]) == 1
    assert "exit status refused" in (contract.read_failure(pod) or "")


@pytest.mark.parametrize("fast", [True, False], ids=["rkt-wait", "python"])
def test_a_hypervisor_killed_by_a_signal_is_a_failure(rkt_wait: Path, tmp_path: Path,
                                                      fast: bool) -> None:
    (tmp_path / "kvm").mkdir()
    status = contract.status_dir(tmp_path)
    status.mkdir(parents=True)
    (status / "a").write_text("0\n")  # a finished, b did not
    p = start(rkt_wait, tmp_path, ["a", "b"], "kill -KILL $$", fast=fast)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 254, err
    lines = [ln for ln in err.splitlines() if not ln.startswith("stage1: kvm:")]
    assert len(lines) == 1 and "killed by SIGKILL" in lines[0], err
    assert "before app(s) b finished" in lines[0]
    assert "SIGKILL" in (contract.read_failure(tmp_path) or "")
