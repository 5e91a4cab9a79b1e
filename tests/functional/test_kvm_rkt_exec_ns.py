"""The guest's `rkt-exec --ns` on the host, no VM: the app's own mount namespace made from
a mount plan (`guest/script.py`), pivot_root into the app's rootfs, the old root
detached. Here "the init's view" is the host's: a chroot escape inside must find none of
it, and the namespace, bound onto a file, is joined by a second rkt-exec as `rkt enter`
does. Root: mounts and namespaces."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyrkt.linux.mount import umount
from pyrkt.stage1 import devices
from pyrkt.stage1.kvm.guest import script
from pyrkt.stage1.plan import AppPlan
from support.cprog import static_program

pytestmark = [pytest.mark.root]

BUSYBOX = Path("/bin/busybox")

ESCAPE_C = r"""
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (chdir("/run") != 0) { perror("chdir"); return 2; }
    mkdir("x", 0755);
    if (chroot("x") != 0) { perror("chroot x"); return 2; }
    for (int i = 0; i < 256; i++) chdir("..");
    if (chroot(".") != 0) { perror("chroot ."); return 2; }
    execv(argv[1], argv + 1);
    return 2;
}
"""


@pytest.fixture(scope="module")
def escape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return static_program(ESCAPE_C, tmp_path_factory.mktemp("escape") / "escape")


class App:
    """An app's rootfs, its mount plan and its namespace file, under tmp."""

    def __init__(self, tmp: Path, rkt_exec: Path, escape: Path) -> None:
        self.tmp, self.rkt_exec = tmp, rkt_exec
        self.root = tmp / "root"
        for d in ("bin", "etc", "tmp"):
            (self.root / d).mkdir(parents=True)
        (self.root / "bin" / "busybox").write_bytes(BUSYBOX.read_bytes())
        (self.root / "bin" / "busybox").chmod(0o755)
        for applet in ("sh", "cat", "ls", "stat", "touch", "cut", "true"):
            (self.root / "bin" / applet).symlink_to("busybox")
        (self.root / "bin" / "escape").write_bytes(escape.read_bytes())
        (self.root / "bin" / "escape").chmod(0o755)
        run = self.root / "run"
        (run / "lock").mkdir(parents=True)
        (run / "lock" / "pid").write_text("42\n")
        (run / "link").symlink_to("lock/pid")
        os.chown(run / "lock", 12, 34)
        (run / "lock").chmod(0o751)
        self.host = tmp / "host"  # what the init's view holds: a file the app must not see
        (self.host / "etc").mkdir(parents=True)
        (self.host / "etc" / "hosts").write_text("10.0.0.1 pod\n")
        (self.host / "secret").write_text("host secret\n")
        self.vol = tmp / "vol"
        self.vol.mkdir()
        (self.vol / "in-volume").write_text("vol\n")
        (tmp / "ns").mkdir()
        self.ns = tmp / "ns" / "app"
        self.ns.touch()  # the pod script's placeholder
        self.plan = tmp / "plan"

    def write_plan(self, *extra: str, readonly: bool = False) -> None:
        """The plan the host writes for this app (`script.app_mounts`), with the pod's
        /etc files from self.host instead of /ctl/etc and a read-only bind of self.vol
        where the volumes go (9p, in a VM), then extra steps there too."""
        rd = os.lstat(self.root / "run")
        run = script.RunDir(rd.st_mode, rd.st_uid, rd.st_gid, empty=False)
        plan = AppPlan(name="app", rootfs=self.root, argv=(), env=(), readonly_rootfs=readonly)
        text = script.app_mounts(plan, {}, ["hosts", "absent"], run)
        steps = text.replace(f" {script.GUEST_CTL}/etc/", f" {self.host}/etc/").splitlines()
        volumes = next(i for i, x in enumerate(steps) if x.startswith("mount proc "))
        steps[volumes:volumes] = [f"mount {self.vol} /my\\040volume none bind,ro,mkdir", *extra]
        self.plan.write_text("\n".join(steps) + "\n")

    def run(self, *argv: str, start: bool = True) -> subprocess.CompletedProcess[str]:
        ns = ["--ns", str(self.ns), *(["--mounts", str(self.plan)] if start else [])]
        return subprocess.run(
            [str(self.rkt_exec), *ns, str(self.root), "/", "0", "0", "-", "18", "0", "-",
             "--", *argv], capture_output=True, text=True, timeout=60,
            stdin=subprocess.DEVNULL, env={"PATH": "/bin"})

    def mounts_left(self) -> list[str]:
        with open("/proc/self/mountinfo") as f:
            return [x for x in f.read().splitlines() if str(self.tmp) in x]


@pytest.fixture
def app(tmp_path: Path, rkt_exec: Path, escape: Path) -> Iterator[App]:
    a = App(tmp_path, rkt_exec, escape)
    yield a
    with contextlib.suppress(OSError):
        umount(str(a.ns))  # the namespace rkt-exec bound there
    assert not a.mounts_left()


def test_the_apps_namespace_holds_its_plan_and_nothing_of_the_init(app: App) -> None:
    app.write_plan(readonly=True)
    r = app.run("/bin/sh", "-c",
                "cat /etc/hosts /run/lock/pid /run/link '/my volume/in-volume'; "
                "stat -c '%a %u %g' /run/lock; ls /dev; "
                "touch /x 2>/dev/null || echo root-read-only; "
                "touch '/my volume/x' 2>/dev/null || echo volume-read-only; "
                "cut -d' ' -f5 /proc/self/mountinfo")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[:4] == ["10.0.0.1 pod", "42", "42", "vol"]
    assert out[4] == "751 12 34"  # /run's content copied with its owner and mode
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm",
            "fd"} <= set(out)
    assert "root-read-only" in out and "volume-read-only" in out
    points = out[out.index("volume-read-only") + 1:]
    # /dev: a nodev tmpfs, each device a bind of the init's node (here: the host's)
    assert points == ["/", "/sys", "/sys/firmware", "/dev",
                      *(f"/dev/{n}" for n, _, _ in devices.DEVICES), "/dev/pts", "/dev/shm",
                      *(["/dev/mqueue"] if "/dev/mqueue" in points else []),
                      "/etc/hosts", "/run", "/my\\040volume", "/proc"]
    assert not (app.root / "etc" / "absent").stat().st_size  # made, left unbound
    assert not app.mounts_left()[1:]  # on the host: the namespace's bind only


def test_a_chroot_escape_ends_at_the_apps_root(app: App) -> None:
    app.write_plan()
    r = app.run("/bin/escape", "/bin/sh", "-c",
                f"ls -1 /; cat {app.host}/secret || echo no-host-secret")
    assert r.returncode == 0, r.stderr
    assert "no-host-secret" in r.stdout.splitlines()
    assert "host secret" not in r.stdout
    assert set(r.stdout.splitlines()) - {"no-host-secret"} == {
        p.name for p in app.root.iterdir()} | {"my volume"}
    # The same escape from a plain chroot reaches the host (what the pod had before).
    plain = subprocess.run(
        [str(app.rkt_exec), str(app.root), "/", "0", "0", "-", "18", "0", "-", "--",
         "/bin/escape", "/bin/sh", "-c", f"cat {app.host}/secret"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/bin"})
    assert plain.stdout == "host secret\n", plain.stderr


def test_enter_joins_the_apps_namespace(app: App) -> None:
    app.write_plan()
    assert app.run("/bin/sh", "-c", "echo from-app > /dev/shm/marker").returncode == 0
    r = app.run("/bin/sh", "-c", "cat /dev/shm/marker /etc/hosts", start=False)
    assert (r.returncode, r.stdout) == (0, "from-app\n10.0.0.1 pod\n"), r.stderr


def test_a_failed_start_removes_the_namespace_file_and_enter_says_so(app: App) -> None:
    app.write_plan("bogus step")
    r = app.run("/bin/true")
    assert r.returncode == 127 and "rkt-exec: step of" in r.stderr
    assert not app.ns.exists()
    e = app.run("/bin/true", start=False)
    assert e.returncode == 127 and "the app did not start" in e.stderr


def test_the_images_symlinks_cannot_lead_the_plan_out_of_the_root(app: App) -> None:
    """/proc is mounted last: before it, rkt-exec (every capability) resolves the image's
    symlinks to its targets, and a link through /proc/PID/root of a process of the init's
    view (here: this test's) would reach that view."""
    out = f"/proc/{os.getpid()}/root{app.host}"
    (app.root / "etc" / "hosts").symlink_to(f"{out}/created")
    app.write_plan()
    r = app.run("/bin/true")
    assert r.returncode == 0, r.stderr  # the link leads nowhere: the /etc file is skipped
    assert not (app.host / "created").exists()
    (app.root / "data").symlink_to(f"{out}/made-dir")
    app.write_plan(f"mount {app.vol} /data/sub none bind,mkdir")
    umount(str(app.ns))  # the first start's namespace; the file is a placeholder again
    r = app.run("/bin/true")
    assert r.returncode == 127 and "mount /data/sub" in r.stderr  # no such folder inside
    assert not (app.host / "made-dir").exists()
