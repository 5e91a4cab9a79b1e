"""Helpers of the suite that mirrors rkt's functional tests (see conftest.py).

    FLAVORS / COREOS / KVM   the `flavor` parameters; kvm_pending(reason) is the kvm one of a
                             behaviour whose guest side is not done yet (a strict xfail)
    Rkt                      the `rkt` command with its own --dir and the flavor's stage1
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyrkt.linux.cgroup import PodCgroups

ImageMaker = Callable[..., Path]

def on(flavor: str, *values: object, pending: str = "", side: str = "guest") -> Any:
    """The pytest parameter (flavor, *values), with the flavor's markers. `pending`: the
    kvm flavor does not do it yet (its `side`, the guest or the runner, is another
    piece of work): a strict xfail, so that the test fails, and the table
    (docs/rkt-compat.md) must change, once it does."""
    marks = [pytest.mark.root]
    if flavor == "kvm":
        marks.append(pytest.mark.qemu)
    if pending:
        marks.append(pytest.mark.xfail(reason=f"kvm: pending ({side} side): {pending}",
                                       strict=True))
    ident = "-".join([flavor, *(str(v) for v in values)])
    return pytest.param(flavor, *values, marks=marks, id=ident)


COREOS = on("coreos")
KVM = on("kvm")
FLAVORS = [COREOS, KVM]


def kvm_pending(reason: str, side: str = "guest") -> Any:
    """The kvm parameter of a behaviour pending on the kvm flavor's `side`."""
    return on("kvm", pending=reason, side=side)


class Rkt:
    """`rkt --dir=... VERB ...` as a user types it (python -m pyrkt)."""

    def __init__(self, d: Path, flavor: str, stage1: Callable[[], Path]) -> None:
        self.dir = d
        self.flavor = flavor
        self._stage1 = stage1
        self.procs: list[subprocess.Popen[str]] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pyrkt", f"--dir={self.dir}", *args]

    def __call__(self, *args: str, timeout: float = 600,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        cp = subprocess.run(self.argv(*args), capture_output=True, text=True,
                            timeout=timeout, input=input,
                            stdin=None if input is not None else subprocess.DEVNULL)
        print(f"$ rkt {' '.join(args)}\n-> {cp.returncode}\nstdout:\n{cp.stdout}"
              f"stderr:\n{cp.stderr}")
        return cp

    def stage1_flag(self) -> str:
        return f"--stage1-path={self._stage1()}"

    def run_args(self, *args: str, net: str = "none", verb: str = "run") -> list[str]:
        pre = [f"--net={net}"] if net else []
        s1 = [self.stage1_flag()] if verb == "run" else []
        return ["--insecure-options=image", verb, *s1, *pre, *args]

    def run(self, *args: str, net: str = "none",
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self(*self.run_args(*args, net=net), timeout=timeout)

    def prepare(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self("--insecure-options=image", "prepare", self.stage1_flag(), *args)

    def start(self, *args: str, net: str = "none", verb: str = "run") -> subprocess.Popen[str]:
        p = subprocess.Popen(self.argv(*self.run_args(*args, net=net, verb=verb)), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        return p

    def uuids(self) -> list[str]:
        pods = self.dir / "pods"
        return [p.name for f in pods.iterdir() for p in f.iterdir()] if pods.is_dir() else []

    def only_uuid(self) -> str:
        uuids = self.uuids()
        assert len(uuids) == 1, uuids
        return uuids[0]

    def status(self, uuid: str) -> dict[str, str]:
        cp = self("status", uuid)
        assert cp.returncode == 0, cp.stderr
        return dict(ln.split("=", 1) for ln in cp.stdout.splitlines() if "=" in ln)

    def diagnostics(self) -> str:
        out = []
        for pod in (self.dir / "pods").glob("*/*"):
            for name in ("cmdline", "serial.log"):
                p = pod / "kvm" / name
                if p.exists():
                    out.append(f"--- {p}:\n{p.read_text(errors='replace')}")
        return "\n".join(out)

    def cleanup(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
        if self.flavor == "kvm":
            from e2e.kvm_helpers import qemu_pids_for

            for pod in (self.dir / "pods").glob("*/*"):
                for pid in qemu_pids_for(str(pod)):
                    os.kill(pid, signal.SIGKILL)
        if (self.dir / "pods").is_dir():
            subprocess.run(self.argv("gc", "--grace-period=0s"), capture_output=True,
                           check=False, timeout=600)
        for uuid in self.uuids():
            PodCgroups(uuid).destroy()
