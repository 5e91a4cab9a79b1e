"""`--oom-score-adj` and `--seccomp` with the kvm stage1 (QEMU; TCG on these machines):
both apply inside the guest (the filter is loaded by rkt-exec just before the app's exec)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import kvm_helpers as kh
import pytest
import test_kvm_rkt as base

pytestmark = [pytest.mark.qemu, pytest.mark.root]


stage1 = base.stage1  # the module fixtures of test_kvm_rkt
image = base.image


@pytest.fixture
def rkt_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "rkt"
    yield d
    print(kh.all_diagnostics(d))  # shown when the test failed
    for pod in kh.pod_dirs(d):
        for pid in kh.qemu_pids_for(str(pod)):
            os.kill(pid, 9)


def run(rkt_dir: Path, stage1: Path, *args: str,
        insecure: str = "image") -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pyrkt", f"--dir={rkt_dir}", "run",
            f"--insecure-options={insecure}", "--net=none", f"--stage1-path={stage1}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)


def test_oom_score_adj_in_the_guest(rkt_dir: Path, stage1: Path, image: Path) -> None:
    r = run(rkt_dir, stage1, str(image), "--oom-score-adj=700", "--exec", "/bin/cat",
            "--", "/proc/self/oom_score_adj", "---",
            str(image), "--name=plain", "--exec", "/bin/cat", "--", "/proc/self/oom_score_adj")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == ["0", "700"]


def test_seccomp_filter_in_the_guest(rkt_dir: Path, stage1: Path, image: Path) -> None:
    script = "mkdir /tmp/d; echo mkdir=$?; touch /tmp/f && echo touched"
    flags = (str(image), "--seccomp", "mode=remove,errno=EPERM,mkdir", "--exec", "/bin/sh",
             "--", "-c", script)
    r = run(rkt_dir, stage1, *flags)
    assert (r.returncode, r.stdout) == (0, "mkdir=1\ntouched\n"), r.stderr
    assert "mkdir: can't create directory '/tmp/d': Operation not permitted" in r.stderr
    off = run(rkt_dir, stage1, *flags, insecure="image,seccomp")
    assert (off.returncode, off.stdout) == (0, "mkdir=0\ntouched\n"), off.stderr


def test_open_files_limit_as_in_a_container(rkt_dir: Path, stage1: Path, image: Path) -> None:
    """An app in the guest gets the open-files limits of the `rkt run` that started it,
    as a container app does (issue 11 point 3: redis could not raise its limit, the
    guest kernel's default 1024/4096)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    r = run(rkt_dir, stage1, str(image), "--exec", "/bin/sh", "--", "-c",
            "ulimit -S -n; ulimit -H -n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(soft), str(hard)]
