"""Chaos: `rkt run` killed at random points, then `rkt gc`: nothing of the pod may be left.

Each trial runs one pod (`busybox sleep`) with one stage1 flavor (the default container
stage1, or the kvm stage1 under QEMU), with `--net=none` or with a ptp network with IP
masquerading that this test creates (which also joins `default-restricted`), and kills
it at one point:
    group      SIGKILL to rkt's whole process group, at a random time after the start
    rkt        SIGKILL to the rkt process only (the pod's other processes live on)
    term       SIGTERM to the whole group
    qemu       SIGKILL to the pod's QEMU only, a random time after it started (kvm)
    cni-group  SIGKILL to the group while a CNI plugin runs the pod's ADD
    cni-rkt    SIGKILL to rkt only while a CNI plugin runs the pod's ADD
then runs `rkt gc --grace-period=0s` until the pod folder is gone (a pod whose processes
outlived rkt is still running until they end), and looks for every trace of the pod
(support.traces: mounts, network namespaces, links, routes, addresses, iptables rules
and chains, IPAM leases, cgroups, processes, pod folders, store staging, temp files).

Scope: the machine is shared with other tests and other users, so nothing is compared by
count. Every check matches only what this test's pods could have made: objects named by
a pod's UUID, the test's data dir, the test's network name, the host interfaces and
addresses the pod's net-info.json and IPAM leases named while it ran, addresses in the
test's subnet that were not there before the test (the one before/after comparison),
the process sessions of the `rkt run`s this test started, and a TMPDIR of the test's
own (the `rkt` processes' temp files). Nothing else on the machine is counted. Before
the kills, one clean run per flavor checks that the checks do see a running pod's
traces (so an empty result means something).

Every combination (flavor x network x kill) runs once per round (`PYRKT_CHAOS_ROUNDS`,
default 1; about 2 minutes on an idle 2-core machine), in an order and with kill times
drawn from a seeded generator: `PYRKT_CHAOS_SEED` (default: random). A failure prints
the seed and, per failing trial, the kill point and what was left.
`PYRKT_CHAOS_ONLY=kvm,cni` (words: a flavor, a kill, `net` or `none`, or the start of
one) keeps only the combinations matching every word, to hammer one of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import kvm_helpers as kh
import pytest
from test_kvm_rkt import accel_env, image, stage1  # noqa: F401 (the kvm tests' fixtures)

from support.traces import Traces

pytestmark = [pytest.mark.root, pytest.mark.qemu, pytest.mark.cni]

APP = ("--exec", "/bin/sleep", "--", "2")
# seconds after the start in which a random kill lands (covering start-up and the app)
HORIZON = {"container": 2.5, "kvm": 5.0}
KILLS = {
    ("container", False): ("group", "rkt", "term"),
    ("container", True): ("group", "rkt", "term", "cni-group", "cni-rkt"),
    ("kvm", False): ("group", "rkt", "term", "qemu"),
    ("kvm", True): ("group", "rkt", "term", "qemu", "cni-group", "cni-rkt"),
}


@dataclass
class Trial:
    n: int
    flavor: str
    net: bool
    kill: str
    delay: float
    uuid: str = ""
    point: str = ""  # what was going on when the kill landed
    problems: list[str] = field(default_factory=list)
    log: str = ""

    def __str__(self) -> str:
        return (f"trial {self.n}: {self.flavor} stage1, --net={'chaos' if self.net else 'none'}"
                f", kill {self.kill} after {self.delay:.3f} s ({self.point}), pod {self.uuid}")


class Chaos:
    def __init__(self, base: Path, stage1_aci: Path, image_aci: Path) -> None:
        self.dir = base / "rkt"
        self.image = image_aci
        self.config = base / "etc-rkt"
        self.tmpdir = base / "tmpdir"
        self.tmpdir.mkdir()
        self.stage1 = stage1_aci
        n = random.randrange(1 << 16)
        self.net = f"chaos-{n:04x}"
        self.subnet = f"10.{200 + n % 50}.{n >> 8}.0/24"
        (self.config / "net.d").mkdir(parents=True)
        (self.config / "net.d" / "10-chaos.conf").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": self.net, "type": "ptp", "ipMasq": True,
            "ipam": {"type": "host-local", "subnet": self.subnet}}))
        self.traces = Traces(self.dir, [self.net, "default-restricted"], [self.subnet])
        self.env = {**os.environ, "TMPDIR": str(self.tmpdir)}
        self.sessions: list[int] = []
        self.running: list[subprocess.Popen[bytes]] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pyrkt", f"--dir={self.dir}",
                f"--local-config={self.config}", *args]

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=self.env, check=False)

    def start(self, flavor: str, net: bool, uuid_file: Path, out: Path,
              *app: str) -> subprocess.Popen[bytes]:
        args = ["run", "--insecure-options=image", f"--uuid-file-save={uuid_file}",
                f"--net={self.net if net else 'none'}"]
        if flavor == "kvm":
            args.append(f"--stage1-path={self.stage1}")
        with open(out, "wb") as f:
            p = subprocess.Popen(self.argv(*args, str(self.image), *(app or APP)),
                                 stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 env=self.env, start_new_session=True)
        self.sessions.append(p.pid)
        self.running.append(p)
        return p

    def pod(self, uuid: str) -> Path | None:
        return next(iter(self.dir.glob(f"pods/*/{uuid}")), None)

    def gc_until_gone(self, uuid: str, timeout: float = 240) -> str:
        """`rkt gc --grace-period=0s` until the pod folder is gone; gc's output. (A
        pod whose processes outlived the kill is running until they end.)"""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            cp = self("gc", "--grace-period=0s")
            out.append(cp.stdout + cp.stderr)
            pod = self.pod(uuid)
            if pod is None or time.monotonic() > deadline or pod.parent.name == "embryo":
                return "".join(out)
            time.sleep(0.5)

    def cleanup(self) -> None:
        """Whatever a failed trial left: its processes, then gc."""
        for p in self.running:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for pod in kh.pod_dirs(self.dir):
            for pid in kh.qemu_pids_for(pod.name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self("gc", "--grace-period=0s")
        # host-local keeps a folder per network name, and each run's network has its own
        # name: the folder is this test's to remove once it holds no lease
        ipam = Path("/var/lib/cni/networks") / self.net
        if ipam.is_dir() and all(f.name == "lock" or f.name.startswith("last_reserved_ip")
                                 for f in ipam.iterdir()):
            shutil.rmtree(ipam)


def cni_add(uuid: str) -> tuple[int, str] | None:
    """(pid, program) of a process working on an ADD for this pod, if any."""
    mark = f"CNI_CONTAINERID={uuid}".encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes().split(b"\0")
            exe = os.readlink(d / "exe")
        except OSError:
            continue
        if mark in env and b"CNI_COMMAND=ADD" in env:
            return int(d.name), Path(exe).name
    return None


def still_in(pid: int) -> bool:
    """Whether the process found by cni_add still works (cheap: checked at the kill)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def wait_for(what: str, cond: object, p: subprocess.Popen[bytes], timeout: float = 240) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        if p.poll() is not None:
            return False
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def describe(c: Chaos, uuid: str) -> str:
    """The state at the kill: the pod's folder, its QEMU, a CNI plugin at work."""
    pod = c.pod(uuid) if uuid else None
    parts = [f"pod in {pod.parent.name}" if pod else "no pod folder yet"]
    if uuid and kh.qemu_pids_for(uuid):
        parts.append("QEMU running")
    return ", ".join(parts)


def run_trial(c: Chaos, t: Trial, base: Path) -> None:
    uf, out = base / f"uuid-{t.n}", base / f"out-{t.n}"
    p = c.start(t.flavor, t.net, uf, out)

    def uuid() -> str:
        """The pod's UUID, once its file is written, or its folder made (the trials run
        one at a time: a pod folder in the data dir is this trial's)."""
        if not t.uuid and uf.exists():
            t.uuid = uf.read_text().strip()
        if not t.uuid:
            t.uuid = next((d.name for d in kh.pod_dirs(c.dir)), "")
        return t.uuid

    started = time.monotonic()
    reached, plugin = True, None
    if t.kill.startswith("cni"):

        def adding() -> bool:
            nonlocal plugin
            plugin = cni_add(t.uuid) if uuid() else None
            return plugin is not None

        reached = wait_for("a CNI ADD", adding, p)
    elif t.kill == "qemu":
        reached = wait_for("QEMU", lambda: uuid() and kh.qemu_pids_for(t.uuid), p)
    if not reached:
        t.point = f"never reached the {t.kill} kill point: rkt exited {p.returncode}"
    time.sleep(max(0.0, t.delay - (time.monotonic() - started) if t.kill in
                   ("group", "rkt", "term") else t.delay))
    uuid()
    if p.poll() is None or t.kill == "qemu":
        if plugin is not None:  # checked at the last moment: the ADD is short
            t.point = f"CNI ADD in {plugin[1]}" if still_in(plugin[0]) else "ADD over"
        t.point = ", ".join(x for x in (t.point, describe(c, t.uuid)) if x)
        if t.uuid:
            c.traces.note_running(t.uuid)
        with contextlib.suppress(ProcessLookupError):
            if t.kill in ("group", "cni-group"):
                os.killpg(p.pid, signal.SIGKILL)
            elif t.kill == "term":
                os.killpg(p.pid, signal.SIGTERM)
            elif t.kill in ("rkt", "cni-rkt"):
                os.kill(p.pid, signal.SIGKILL)
            else:
                for pid in kh.qemu_pids_for(t.uuid):
                    os.kill(pid, signal.SIGKILL)
    else:
        t.point = t.point or f"after rkt exited {p.returncode}"
    try:
        p.wait(timeout=240)
    except subprocess.TimeoutExpired:
        t.problems.append("rkt run did not end after the kill")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    t.log = out.read_text(errors="replace")[-2000:]
    if not uuid():  # killed before any pod folder existed
        t.problems += c.traces.find([], sessions=[p.pid], tmpdir=c.tmpdir)
        return
    c.traces.note_running(t.uuid)
    gc_out = c.gc_until_gone(t.uuid)
    pod = c.pod(t.uuid)
    if pod is not None and pod.parent.name == "embryo":
        # killed between making the folder and locking it: gc leaves an embryo alone
        # for EMBRYO_STALE_S (it may be being made), as rkt did (docs/pods.md)
        t.point += "; left an embryo"
        shutil.rmtree(pod)
    elif pod is not None:
        t.problems.append(f"gc kept the pod in {pod.parent.name}")
    t.problems += c.traces.find([t.uuid], sessions=[p.pid], tmpdir=c.tmpdir)
    if t.problems:
        t.log += f"\n--- gc:\n{gc_out[-2000:]}"


@pytest.fixture
def chaos(tmp_path: Path, stage1: Path, image: Path, accel_env: str) -> Iterator[Chaos]:  # noqa: F811
    c = Chaos(tmp_path, stage1, image)
    try:
        yield c
    finally:
        c.cleanup()


def clean_run_sees_traces(c: Chaos, flavor: str, base: Path) -> None:
    """A pod run to its end, with the checks made while it runs (they must find it)
    and after gc (they must find nothing)."""
    uf, out = base / f"uuid-{flavor}", base / f"out-{flavor}"
    p = c.start(flavor, True, uf, out, "--exec", "/bin/sleep", "--", "3")
    wait_for("the pod to run", lambda: uf.exists() and (c.pod(uf.read_text().strip()) or
             Path("/nonexistent")).joinpath("pid").exists(), p)
    uuid = uf.read_text().strip()
    c.traces.note_running(uuid)
    seen = c.traces.find([uuid], sessions=[p.pid], tmpdir=c.tmpdir)
    assert p.wait(timeout=240) == 0, out.read_text()
    kinds = {s.split()[0] for s in seen}
    assert {"pod", "process"} <= kinds, seen
    assert flavor != "container" or "cgroup" in kinds, seen
    gc_out = c.gc_until_gone(uuid)
    assert c.traces.find([uuid], sessions=[p.pid], tmpdir=c.tmpdir) == [], gc_out


def test_kill_rkt_run_anywhere_then_gc_leaves_nothing(chaos: Chaos, tmp_path: Path) -> None:
    seed = int(os.environ.get("PYRKT_CHAOS_SEED") or random.randrange(1 << 32))
    rounds = int(os.environ.get("PYRKT_CHAOS_ROUNDS") or 1)
    print(f"chaos seed {seed} (PYRKT_CHAOS_SEED={seed} repeats this run)")
    rng = random.Random(seed)
    for flavor in ("container", "kvm"):
        clean_run_sees_traces(chaos, flavor, tmp_path)
    only = [w for w in os.environ.get("PYRKT_CHAOS_ONLY", "").split(",") if w]
    combos = [(f, n, k) for (f, n), kills in KILLS.items() for k in kills
              if all(any(x.startswith(w) for x in (f, k, "net" if n else "none"))
                     for w in only)] * rounds
    assert combos, f"PYRKT_CHAOS_ONLY={','.join(only)} matches no combination"
    rng.shuffle(combos)
    trials = []
    for i, (flavor, net, kill) in enumerate(combos):
        top = HORIZON[flavor] if kill in ("group", "rkt", "term") else \
            4.0 if kill == "qemu" else 0.05  # an ADD takes some 50 ms here
        t = Trial(i, flavor, net, kill, rng.uniform(0, top))
        run_trial(chaos, t, tmp_path)
        print(t, "->", "clean" if not t.problems else t.problems)
        trials.append(t)
    failed = [t for t in trials if t.problems]
    assert not failed, f"seed {seed}:\n" + "\n\n".join(
        f"{t}\n  left: {t.problems}\n  output:\n{t.log}" for t in failed)
