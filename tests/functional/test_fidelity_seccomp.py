"""Per-app seccomp filters (`--seccomp`, the `os/linux/seccomp-*-set` isolators) and
`--oom-score-adj` with the container stage1, as a user sees them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyrkt.linux.cgroup import PodCgroups
from support.images import busybox_rootfs, write_aci

pytestmark = pytest.mark.root

SECCOMP_ISO = "os/linux/seccomp-remove-set"


def manifest(isolators: list[dict[str, object]] | None = None) -> dict[str, object]:
    app: dict[str, object] = {"exec": ["/bin/sh"], "user": "0", "group": "0"}
    if isolators:
        app["isolators"] = isolators
    return {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/sc",
            "labels": [{"name": "arch", "value": "amd64"}, {"name": "os", "value": "linux"}],
            "app": app}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("aci")
    busybox_rootfs(work / "rootfs")
    return work


@pytest.fixture(scope="module")
def aci(tree: Path) -> Path:
    return write_aci(tree, manifest(), "plain.aci")


class Rkt:
    def __init__(self, d: Path) -> None:
        self.dir = d

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pyrkt", f"--dir={self.dir}", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=180,
                              stdin=subprocess.DEVNULL)

    def sh(self, image: Path, script: str, *app_flags: str,
           insecure: str = "image") -> subprocess.CompletedProcess[str]:
        return self(f"--insecure-options={insecure}", "run", "--net=none", str(image),
                    *app_flags, "--exec", "/bin/sh", "--", "-c", script)

    def pods(self) -> list[Path]:
        return list((self.dir / "pods").glob("*/*"))


@pytest.fixture
def rkt(tmp_path: Path) -> Iterator[Rkt]:
    r = Rkt(tmp_path / "rkt")
    yield r
    for pod in r.pods():
        PodCgroups(pod.name).destroy()


def test_remove_set_with_errno_denies_only_that_call(rkt: Rkt, aci: Path) -> None:
    r = rkt.sh(aci, "mkdir /tmp/d; echo mkdir=$?; touch /tmp/f && ls /tmp",
               "--seccomp", "mode=remove,errno=EPERM,mkdir")
    assert r.returncode == 0, r.stderr
    assert "mkdir: can't create directory '/tmp/d': Operation not permitted" in r.stderr
    assert r.stdout == "mkdir=1\nf\n"


def test_remove_set_without_errno_kills_with_sigsys(rkt: Rkt, aci: Path) -> None:
    r = rkt("--insecure-options=image", "run", "--net=none", str(aci),
            "--seccomp", "mode=remove,mkdir", "--exec", "/bin/mkdir", "--", "/tmp/d")
    assert r.returncode == 128 + 31, r.stderr  # SIGSYS


def test_retain_set_fails_what_it_lacks(rkt: Rkt, aci: Path) -> None:
    # busybox adjtimex calls clock_adjtime (read-only: allowed without capabilities)
    script = "adjtimex >/dev/null && echo adjtimex-ok; ls / >/dev/null && echo ls-ok"
    lacking = rkt.sh(aci, script, "--seccomp",
                     "mode=retain,errno=ENOSYS,@rkt/default-whitelist")
    assert lacking.returncode == 0, lacking.stderr
    assert lacking.stdout == "ls-ok\n"
    assert "Function not implemented" in lacking.stderr
    having = rkt.sh(aci, script, "--seccomp",
                    "mode=retain,errno=ENOSYS,@rkt/default-whitelist,clock_adjtime")
    assert (having.returncode, having.stdout) == (0, "adjtimex-ok\nls-ok\n"), having.stderr


def test_filter_applies_to_its_app_only(rkt: Rkt, aci: Path) -> None:
    r = rkt("--insecure-options=image", "run", "--net=none",
            str(aci), "--name=filtered", "--seccomp", "mode=remove,errno=EACCES,mkdir",
            "--exec", "/bin/sh", "--", "-c", "mkdir /tmp/a 2>/dev/null || echo denied", "---",
            str(aci), "--name=free", "--exec", "/bin/sh", "--", "-c",
            "mkdir /tmp/b && echo made")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == ["denied", "made"]


def test_bad_syscall_name_is_a_clear_error_and_leaves_no_pod(rkt: Rkt, aci: Path) -> None:
    for flag, words in (("mode=remove,errno=EPERM,mkdri", "unknown syscall 'mkdri'"),
                        ("mode=remove,errno=EPREM,mkdir", "unknown errno 'EPREM'"),
                        ("mode=keep,mkdir", "invalid --seccomp mode 'keep'"),
                        ("mode=retain,@rkt/nope", "unknown seccomp group '@rkt/nope'")):
        r = rkt.sh(aci, "true", "--seccomp", flag)
        assert r.returncode == 254, r.stderr
        assert words in r.stderr and "Traceback" not in r.stderr
    assert rkt.pods() == []


def test_image_isolator_applies_and_flag_replaces_it(rkt: Rkt, tree: Path,
                                                     tmp_path: Path) -> None:
    iso = {"name": SECCOMP_ISO, "value": {"set": ["mkdir"], "errno": "EPERM"}}
    image = write_aci(tree, manifest([iso]), "isolated.aci")
    script = "mkdir /tmp/d 2>/dev/null && echo made || echo denied"
    assert rkt.sh(image, script).stdout == "denied\n"
    r = rkt.sh(image, script, "--seccomp", "mode=remove,errno=EPERM,rmdir")
    assert r.stdout == "made\n", r.stderr
    # and the pod manifest carries the flag's set in place of the image's
    uuid_file = tmp_path / "uuid"
    p = rkt("--insecure-options=image", "prepare", f"--uuid-file-save={uuid_file}",
            str(image), "--seccomp", "mode=retain,errno=ENOSYS,@docker/default-whitelist")
    assert p.returncode == 0, p.stderr
    pm = json.loads(rkt("cat-manifest", uuid_file.read_text().strip()).stdout)
    isolators = pm["apps"][0]["app"]["isolators"]
    assert isolators == [{"name": "os/linux/seccomp-retain-set",
                          "value": {"set": ["@docker/default-whitelist"], "errno": "ENOSYS"}}]


def test_insecure_options_seccomp_lifts_default_and_own_filters(rkt: Rkt, aci: Path) -> None:
    script = "grep Seccomp: /proc/self/status; mkdir /tmp/d && echo made"
    default = rkt.sh(aci, script)
    assert default.stdout.split() == ["Seccomp:", "2", "made"], default.stderr
    off = rkt.sh(aci, script, "--seccomp", "mode=remove,errno=EPERM,mkdir",
                 insecure="image,seccomp")
    assert off.stdout.split() == ["Seccomp:", "0", "made"], off.stderr


def test_oom_score_adj(rkt: Rkt, aci: Path) -> None:
    # raising it needs no privilege (lowering needs CAP_SYS_RESOURCE, which the
    # machines running this suite may lack)
    r = rkt.sh(aci, "cat /proc/self/oom_score_adj", "--oom-score-adj=500")
    assert (r.returncode, r.stdout) == (0, "500\n"), r.stderr
    plain = rkt.sh(aci, "cat /proc/self/oom_score_adj")
    assert plain.stdout == "0\n", plain.stderr
    bad = rkt.sh(aci, "true", "--oom-score-adj=2000")
    assert bad.returncode == 254 and "invalid --oom-score-adj '2000'" in bad.stderr
