"""rkt's behaviour for users who are not root, tried for real: users and a `rkt` group
made for the test (removed after it), `rkt` run under their uid by `setpriv` (every
capability dropped by the exec).

rkt's model (Documentation/trying-out-rkt.md, dist/scripts/setup-data-dir.sh): the
data directory belongs to the `rkt` group; its members may list and inspect pods and
images and fetch ACIs; everyone else gets a one-line error; the verbs that run or
remove pods say "cannot run as unprivileged user".
"""

from __future__ import annotations

import grp
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import pyrkt
from pyrkt.datadir import RKT_GROUP

pytestmark = pytest.mark.root


def _aci(dest: Path, name: str) -> Path:
    src = dest.with_suffix(".d")
    (src / "rootfs/bin").mkdir(parents=True)
    shutil.copy(shutil.which("busybox") or "/bin/busybox", src / "rootfs/bin/busybox")
    (src / "rootfs/bin/sh").symlink_to("busybox")
    (src / "manifest").write_text(json.dumps({
        "acKind": "ImageManifest", "acVersion": "0.8.11", "name": name,
        "labels": [{"name": "version", "value": "1.0"}, {"name": "os", "value": "linux"},
                   {"name": "arch", "value": "amd64"}],
        "app": {"exec": ["/bin/sh", "-c", "echo hello from $AC_APP_NAME"], "user": "0",
                "group": "0"},
    }))  # fmt: skip
    subprocess.run(["tar", "-C", str(src), "-cf", str(dest), "manifest", "rootfs"], check=True)
    return dest


@dataclass
class User:
    name: str
    groups: list[str]
    python: str
    env: dict[str, str]
    data: Path

    def rkt(self, *args: str) -> subprocess.CompletedProcess[str]:
        groups = ["--groups=" + ",".join(self.groups)] if self.groups else ["--clear-groups"]
        argv = ["setpriv", f"--reuid={self.name}", f"--regid={self.name}", *groups,
                self.python, "-m", "pyrkt", f"--dir={self.data}", "--insecure-options=image",
                *args]  # fmt: skip
        cp = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=300)
        print(f"$ [{self.name}] rkt {' '.join(args)}\n-> {cp.returncode}\n{cp.stdout}{cp.stderr}")
        return cp


def _python_for(user: str) -> str:
    """An interpreter `user` can run with this pyrkt's Python version: this one when it
    is reachable (a pyenv under /root is not), else the system's of the same version."""
    v = f"{sys.version_info.major}.{sys.version_info.minor}"
    for py in (sys.executable, os.path.realpath(sys.executable), f"/usr/bin/python{v}"):
        cp = subprocess.run(
            ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "/bin/sh",
             "-c", f'exec "{py}" -c "import sys; print(sys.version_info[:2])"'],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if cp.returncode == 0 and cp.stdout.strip() == str(sys.version_info[:2]):
            return py
    pytest.skip(f"no Python {v} that an unprivileged user may run")


@pytest.fixture(scope="module")
def accounts() -> Iterator[tuple[str, str]]:
    """A member of the `rkt` group and a user outside it; the group made if missing."""
    tag = secrets.token_hex(3)
    member, other = f"pyrkt-m-{tag}", f"pyrkt-o-{tag}"
    try:
        grp.getgrnam(RKT_GROUP)
        made_group = False
    except KeyError:
        subprocess.run(["groupadd", "--system", RKT_GROUP], check=True)
        made_group = True
    try:
        for user, extra in ((member, ["-G", RKT_GROUP]), (other, [])):
            subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                            "--user-group", *extra, user], check=True)  # fmt: skip
        yield member, other
    finally:
        for user in (member, other):
            subprocess.run(["userdel", user], capture_output=True, check=False)
        if made_group:
            subprocess.run(["groupdel", RKT_GROUP], check=False)


@dataclass
class Lab:
    data: Path
    root: User
    member: User
    other: User
    image: Path
    uuid_run: str
    uuid_prepared: str


@pytest.fixture(scope="module")
def lab(accounts: tuple[str, str]) -> Iterator[Lab]:
    # a folder everyone may enter (pytest's tmp_path is under a 0700 one)
    base = Path(tempfile.mkdtemp(prefix="pyrkt-nonroot-"))
    base.chmod(0o755)
    try:
        data = base / "data"
        home = base / "home"
        home.mkdir()
        home.chmod(0o777)
        src = str(Path(pyrkt.__file__).resolve().parent.parent)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home),
               "PYTHONPATH": f"{src}:{sysconfig.get_path('purelib')}"}  # fmt: skip
        member, other = accounts
        root = User("root", [], sys.executable, env, data)
        image = _aci(base / "app.aci", "example.com/app")
        ran = root.rkt("run", "--net=none", str(image))
        assert ran.returncode == 0, ran.stderr
        prepared = root.rkt("prepare", str(image))
        assert prepared.returncode == 0, prepared.stderr
        uuids = {p.name for p in (data / "pods/run").iterdir()}
        yield Lab(data, root, User(member, [RKT_GROUP], _python_for(member), env, data),
                  User(other, [], _python_for(other), env, data), image, uuids.pop(),
                  prepared.stdout.strip())  # fmt: skip
        root.rkt("gc", "--grace-period=0s", "--expire-prepared=0s")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_data_dir_permissions_are_rkts(lab: Lab) -> None:
    gid = grp.getgrnam(RKT_GROUP).gr_gid
    want = {".": 0o2750, "pods": 0o2750, "pods/run": 0o2750, "pods/prepared": 0o2750,
            "cas": 0o2770, "cas/db": 0o2770, "cas/blobs": 0o2770, "cas/tmp": 0o2770,
            "cas/locks": 0o2770, "cas/trees": 0o2700, "cas/db/index.sqlite": 0o660}  # fmt: skip
    for rel, mode in want.items():
        st = (lab.data / rel).stat()
        assert (rel, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (rel, mode, 0, gid)
    pod = (lab.data / "pods/run" / lab.uuid_run).stat()
    assert (stat.S_IMODE(pod.st_mode), pod.st_gid) == (0o750, gid)  # no setgid bit inside


def test_member_lists_and_inspects(lab: Lab) -> None:
    cp = lab.member.rkt("list", "--full")
    assert cp.returncode == 0, cp.stderr
    assert lab.uuid_run in cp.stdout and lab.uuid_prepared in cp.stdout
    st = lab.member.rkt("status", lab.uuid_run)
    assert st.returncode == 0, st.stderr
    assert "exited=true" in st.stdout and "app-app=0" in st.stdout
    assert lab.member.rkt("cat-manifest", lab.uuid_prepared).returncode == 0
    images = lab.member.rkt("image", "list")
    assert images.returncode == 0 and "example.com/app:1.0" in images.stdout
    manifest = lab.member.rkt("image", "cat-manifest", "example.com/app")
    assert manifest.returncode == 0 and '"example.com/app"' in manifest.stdout


def test_member_fetches_an_aci_that_root_then_runs(lab: Lab) -> None:
    image = _aci(lab.data.parent / "fetched.aci", "example.com/fetched")
    os.chmod(image, 0o644)
    cp = lab.member.rkt("fetch", str(image))
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.startswith("sha512-")
    ran = lab.root.rkt("run", "--net=none", "example.com/fetched")
    assert ran.returncode == 0, ran.stderr
    assert "hello from fetched" in ran.stdout


@pytest.mark.parametrize("who", ["member", "other"])
def test_root_verbs_say_rkts_message(lab: Lab, who: str) -> None:
    user: User = getattr(lab, who)
    for verb in (["run", str(lab.image)], ["prepare", str(lab.image)], ["gc"],
                 ["rm", lab.uuid_run], ["stop", lab.uuid_run], ["run-prepared", "x"],
                 ["enter", lab.uuid_run], ["export", lab.uuid_run, "/tmp/x.aci"]):  # fmt: skip
        cp = user.rkt(*verb)
        assert cp.returncode == 254, verb
        assert cp.stderr.strip().splitlines() == [f"{verb[0]}: cannot run as unprivileged user"]


def test_member_cannot_do_what_needs_root(lab: Lab) -> None:
    for verb, message in ((["image", "gc"], "Permission denied"),
                          (["fetch", "oci:/nowhere"], "as an unprivileged user")):  # fmt: skip
        cp = lab.member.rkt(*verb)
        assert cp.returncode == 254
        assert "Traceback" not in cp.stderr
        assert len(cp.stderr.strip().splitlines()) == 1
        assert message in cp.stderr


def test_others_get_one_line(lab: Lab) -> None:
    for verb in (["list"], ["status", lab.uuid_run], ["image", "list"],
                 ["fetch", str(lab.image)], ["cat-manifest", lab.uuid_run]):  # fmt: skip
        cp = lab.other.rkt(*verb)
        assert cp.returncode == 254, verb
        lines = [ln for ln in cp.stderr.splitlines()
                 if not ln.startswith(("rkt: warning:", "image: warning:"))]
        assert len(lines) == 1 and "Traceback" not in cp.stderr, cp.stderr
        assert "permission denied" in lines[0].lower()
        assert "members of the rkt group may list" in lines[0]
