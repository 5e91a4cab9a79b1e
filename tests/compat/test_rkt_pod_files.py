"""The files rkt puts in an app's filesystem:

- rkt_mtab_test.go: /etc/mtab -> ../proc/self/mounts when the image has none;
- rkt_etc_hosts_test.go: /etc/hosts (rkt's fallback with the pod's hostname when the image
  has none, the image's own otherwise; the host's with --hosts-entry=host; rkt's comment
  and the entries with --hosts-entry=IP=NAME; a host volume over it) and /etc/hostname;
- rkt_paths_test.go: /sys/firmware and /proc/kcore inaccessible (mode 0), /proc/sysrq-
  trigger read-only, /dev/ptmx a character device for everyone.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from rktcompat import ImageMaker, Rkt, on


def sh(rkt: Rkt, make_image: ImageMaker, script: str, *flags: str,
       files: dict[str, str | None] | None = None, pre: tuple[str, ...] = ()) -> str:
    image = make_image(app={"exec": ["/bin/sh", "-c", script]}, files=files)
    cp = rkt.run(*pre, str(image), *flags)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def test_mtab(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    assert sh(rkt, make_image, "readlink /etc/mtab; head -1 /etc/mtab | wc -l") == \
        "../proc/self/mounts\n1\n"


def test_mtab_of_the_image_is_kept(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    assert sh(rkt, make_image, "cat /etc/mtab", files={"/etc/mtab": "mine\n"}) == "mine\n"


FALLBACK = re.compile(r"127\.0\.0\.1 localhost localhost\.domain localhost4 "
                      r"localhost4\.localdomain4 rkt-[a-z0-9-]{36}\n")


def test_etc_hosts(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    out = sh(rkt, make_image, "cat /etc/hosts")
    assert out.startswith("# This is the default rkt /etc/hosts\n") and FALLBACK.search(out)
    host = hashlib.sha1(Path("/etc/hosts").read_bytes()).hexdigest()
    for flags in (["--hosts-entry=host"], ["--hosts-entry=host", "--hosts-entry=host"]):
        out = sh(rkt, make_image, "sha1sum /etc/hosts", pre=tuple(flags))
        assert out.split()[0] == host
    out = sh(rkt, make_image, "cat /etc/hosts", pre=("--hosts-entry=128.66.0.99=host1",))
    assert out.endswith("\n\n# Added by rkt run --hosts-entry\n128.66.0.99 host1\n")
    assert FALLBACK.search(out)


@pytest.mark.parametrize("flavor", [on("coreos"), on("kvm")])
def test_etc_hosts_of_the_image_is_kept(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    assert sh(rkt, make_image, "cat /etc/hosts", files={"/etc/hosts": "<<<mine>>>\n"}) == \
        "<<<mine>>>\n"


@pytest.mark.parametrize("flavor", [
    on("coreos"), on("kvm")])
def test_etc_hosts_from_a_host_volume(flavor: str, rkt: Rkt, make_image: ImageMaker,
                                     tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text("<<<preexisting etc>>>")
    out = sh(rkt, make_image, "cat /etc/hosts", "--mount", "volume=hosts,target=/etc/hosts",
             pre=(f"--volume=hosts,kind=host,source={tmp_path / 'hosts'}",))
    assert out == "<<<preexisting etc>>>"


def test_etc_hostname(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    """TestPrepareAppCheckEtcHostname."""
    assert sh(rkt, make_image, "stat -c %A /etc/hostname") == "-rw-r--r--\n"
    assert sh(rkt, make_image, "cat /etc/hostname",
              pre=("--hostname=custom_hostname_setting",)) == "custom_hostname_setting\n"
    assert sh(rkt, make_image, "cat /etc/hostname").startswith("rkt-")


def first_of(*paths: str) -> str:
    """The first of paths this host's kernel has (these machines have no /proc/kcore,
    no /proc/sysrq-trigger): the same protection, on a file that exists."""
    return next((p for p in paths if Path(p).exists()), paths[0])


KCORE = first_of("/proc/kcore", "/proc/kallsyms")


@pytest.mark.parametrize(("flavor", "path", "mode"), [
    on("coreos", "/sys/firmware", "d---------"), on("coreos", KCORE, "----------"),
    on("kvm", "/sys/firmware", "d---------"),
])  # fmt: skip
def test_proc_paths_stat(flavor: str, path: str, mode: str, rkt: Rkt,
                         make_image: ImageMaker) -> None:
    """TestProcPathsStat (rkt skipped /proc/kcore under kvm: the guest's own kernel)."""
    assert sh(rkt, make_image, f"stat -c %A {path}") == f"{mode}\n"
    image = make_image(app={"exec": ["/bin/sh", "-c", f"stat -c %A {path}"]})
    uuid = rkt.prepare(str(image)).stdout.strip()
    cp = rkt("--insecure-options=image", "run-prepared", "--net=none", uuid)
    assert (cp.returncode, cp.stdout) == (0, f"{mode}\n")


@pytest.mark.root
@pytest.mark.parametrize("insecure", ["image", "image,ondisk,capabilities", "all-fetch"])
def test_paths_write(rkt: Rkt, make_image: ImageMaker, insecure: str) -> None:
    """TestPathsWrite (rkt: not under kvm): /proc/sysrq-trigger is read-only (here,
    without one, /proc/sys/kernel/core_pattern, written with the value it has)."""
    path = first_of("/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern")
    image = make_image(app={"exec": ["/bin/sh", "-c", f'v="$(cat {path})"; '
                                                      f'echo "${{v:-h}}" > {path}']})
    cp = rkt(f"--insecure-options={insecure}", "run", rkt.stage1_flag(), "--net=none",
             str(image))
    assert cp.returncode != 0 and "Read-only file system" in cp.stderr


def test_dev_paths_stat(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    assert sh(rkt, make_image, "stat -L -c '%A %u %g' /dev/ptmx") == "crw-rw-rw- 0 0\n"
