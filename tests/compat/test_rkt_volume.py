"""rkt's tests/rkt_volume_test.go (TestVolumes, TestDockerVolumeSemantics[PodManifest]),
rkt_volume_mount_test.go, rkt_mount_test.go (TestMountSymlink) and the volume parts of
the issue: host volumes read-write and read-only, mounts the image does not declare,
implicit empty volumes (one per app, `<app>-<point>`; a docker image's filled from the
image), pod-level `--mount`, targets resolved inside the app's rootfs (`..`, links),
recursive and non-recursive host volumes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rktcompat import ImageMaker, Rkt, on

FILES: dict[str, str | None] = {"/dir1/file": "dir1", "/dir2/file": "dir2"}
LINKS = {"/dir1/link_abs_dir2": "/dir2", "/dir1/link_rel_dir2": "../dir2",
         "/dir1/link_abs_dotdot_dir2": "/../dir2", "/dir1/link_abs_root": "/",
         "/dir1/link_abs_notexists": "/notexists"}  # fmt: skip
DOCKER = [{"name": "appc.io/docker/repository", "value": "example.com/rkt-volume-image"}]


def image(make_image: ImageMaker, script: str, *, points: list[tuple[str, str, bool]] = (),
          name: str = "example.com/rkt-inspect", **extra: object) -> str:
    """The rkt-inspect image's tree (dir1, dir2, the links) running `script`."""
    app = {"exec": ["/bin/sh", "-c", script],
           "mountPoints": [{"name": n, "path": p, "readOnly": ro} for n, p, ro in points]}
    return str(make_image(name=name, app=app, files=FILES, links=LINKS, **extra))


def run(rkt: Rkt, *args: str, code: int = 0) -> str:
    """The pod's stdout (and stderr, when it is expected to fail)."""
    cp = rkt.run(*args)
    assert cp.returncode == code, cp.stderr
    return cp.stdout if code == 0 else cp.stdout + cp.stderr


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    d = tmp_path / "host"
    d.mkdir()
    (d / "file").write_text("host")
    return d


def test_volumes(flavor: str, rkt: Rkt, make_image: ImageMaker, host_dir: Path) -> None:
    """TestVolumes, row by row (rows depend on what earlier ones wrote)."""
    vol = f"--volume=dir1,kind=host,source={host_dir}"
    read, write = 'cat "$FILE"', 'echo -n "$CONTENT" > "$FILE" && cat "$FILE"'
    rw, ro = [("dir1", "/dir1", False)], [("dir1", "/dir1", True)]
    env = "--set-env=FILE=/dir1/file"
    assert run(rkt, env, image(make_image, read)).startswith("dir1")
    assert run(rkt, env, vol, image(make_image, read, points=rw), "--mount",
               "volume=dir1,target=dir1").startswith("host")
    assert run(rkt, env, vol, image(make_image, read, points=ro), "--mount",
               "volume=dir1,target=dir1").startswith("host")
    out = run(rkt, "--set-env=FILE=/a/b", vol, image(make_image, 'stat -c "%n: %A" "$FILE"'),
              "--mount", "volume=dir1,target=/a/b/c")
    assert out.startswith("/a/b: drwxr-xr-x")
    assert run(rkt, env, "--set-env=CONTENT=1", image(make_image, write)).startswith("1")
    assert run(rkt, env, "--set-env=CONTENT=2", vol, image(make_image, write, points=rw),
               "--mount", "volume=dir1,target=dir1").startswith("2")
    out = run(rkt, env, "--set-env=CONTENT=3", vol, image(make_image, write, points=ro),
              "--mount", "volume=dir1,target=dir1", code=1)
    assert "Read-only file system" in out
    assert run(rkt, env, vol, image(make_image, read, points=ro), "--mount",
               "volume=dir1,target=dir1").startswith("2")
    assert (host_dir / "file").read_text() == "2"
    # a mount the image does not declare (target relative: from the app's root)
    assert run(rkt, env, "--set-env=CONTENT=1", vol, image(make_image, write),
               "--mount=volume=dir1,target=dir1").startswith("1")
    out = run(rkt, env, "--set-env=CONTENT=1", f"{vol},readOnly=true", image(make_image, write),
              "--mount=volume=dir1,target=dir1", code=1)
    assert "Read-only file system" in out
    # an implicit empty volume for a mount point without a volume
    assert run(rkt, env, "--set-env=CONTENT=1", image(make_image, write, points=rw)) \
        .startswith("1")
    for target in ("/dir1/dir2/dir3", "/a/b/c"):  # deep and new mount points
        (host_dir / "file").write_text("1")
        assert run(rkt, f"--set-env=FILE={target}/file", vol, image(make_image, read),
                   "--mount", f"volume=dir1,target={target}").startswith("1")


def test_volume_shared_by_two_apps(flavor: str, rkt: Rkt, make_image: ImageMaker,
                                   host_dir: Path) -> None:
    writer = image(make_image, "echo -n 1 > /dir1/file", points=[("dir1", "/dir1", False)])
    reader = image(make_image, "sleep 1; cat /dir1/file", name="example.com/rkt-inspect-2",
                   points=[("dir1", "/dir1", True)])
    assert run(rkt, f"--volume=dir1,kind=host,source={host_dir}", writer, reader) == "1"


def test_implicit_volumes_one_per_app(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    """Two apps with the same mount point and no volume: one empty volume each."""
    first = image(make_image, "echo one > /data/f; sleep 2; cat /data/f",
                  name="example.com/first", points=[("data", "/data", False)])
    second = image(make_image, "sleep 1; ls /data | wc -l; echo two > /data/f",
                   name="example.com/second", points=[("data", "/data", False)])
    cp = rkt.run(first, second)
    assert cp.returncode == 0, cp.stderr
    assert sorted(cp.stdout.split()) == ["0", "one"]
    warning = ('stage1: warning: no volume specified for mount point "data", implicitly '
               'creating an "empty" volume. This volume will be removed when the pod is '
               "garbage-collected.")
    assert cp.stderr.count(warning) == 2  # one for each app
    pod = next((rkt.dir / "pods").glob("*/*"))
    assert sorted(p.name for p in (pod / "volumes").iterdir()) == ["first-data", "second-data"]
    assert (pod / "volumes/second-data/f").read_text() == "two\n"
    manifest = json.loads(rkt("cat-manifest", pod.name).stdout)
    assert manifest.get("volumes") in (None, [])  # rkt: not in the pod manifest


DOCKER_CASES = [("/dir1", "dir1"), ("/dir2", "dir2"), ("/dir1/link_rel_dir2", "dir2"),
                ("/dir1/link_abs_dir2", "dir2")]  # fmt: skip


@pytest.mark.parametrize("pod_manifest", [False, True], ids=["flags", "pod-manifest"])
def test_docker_volume_semantics(flavor: str, rkt: Rkt, make_image: ImageMaker,
                                 tmp_path: Path, pod_manifest: bool) -> None:
    """TestDockerVolumeSemantics[PodManifest]: a docker image's implicit volume starts
    with what the image has at the mount point (through links inside the image); an
    appc image's starts empty."""
    for i, (path, content) in enumerate(DOCKER_CASES):
        img = image(make_image, f"cat {path}/file", name=f"example.com/rkt-volume-image-{i}",
                    points=[("mydir", path, False)], annotations=DOCKER)
        if not pod_manifest:
            assert run(rkt, img).startswith(content)
            continue
        image_id = rkt("--insecure-options=image", "fetch", "--full", img).stdout.strip()
        pm = {"acKind": "PodManifest", "acVersion": "0.8.11", "apps": [{
            "name": "rkt-volume-image", "image": {"id": image_id},
            "app": {"exec": ["/bin/sh", "-c", f"cat {path}/file"], "user": "0", "group": "0",
                    "mountPoints": [{"name": "mydir", "path": path}]}}]}  # fmt: skip
        (tmp_path / "pm.json").write_text(json.dumps(pm))
        assert run(rkt, f"--pod-manifest={tmp_path / 'pm.json'}").startswith(content)
    appc = image(make_image, "ls /dir1 | wc -l", points=[("mydir", "/dir1", False)])
    assert run(rkt, appc).startswith("0")


def test_pod_level_mount(flavor: str, rkt: Rkt, make_image: ImageMaker,
                         host_dir: Path) -> None:
    """`--mount` before the first image is every app's (rkt's MergeMounts); an app's own
    mount of the same target wins."""
    # one write per app: both apps share the console, two writes could interleave
    one = image(make_image, "echo \"$(cat /shared/file)\"", name="example.com/one")
    two = image(make_image, "echo \"$(cat /shared/file)\"", name="example.com/two")
    other = host_dir.parent / "other"
    other.mkdir()
    (other / "file").write_text("other")
    cp = rkt.run(f"--volume=v,kind=host,source={host_dir}", f"--volume=o,kind=host,source={other}",
                 "--mount=volume=v,target=/shared", one, two, "--mount=volume=o,target=/shared")
    assert (cp.returncode, sorted(cp.stdout.split())) == (0, ["host", "other"]), cp.stderr


MOUNT_SYMLINK = [  # TestMountSymlink: (mount target, where the app finds the file)
    ("/dir1/link_abs_dir2/foo", "/dir2/foo"),
    ("/dir1/link_rel_dir2/bar", "/dir2/bar"),
    ("/dir1/../dir1/.//link_rel_dir2/foo", "/dir2/foo"),
    ("/dir1/../../../foo", "/foo"),
    ("/dir1/link_abs_dotdot_dir2/foo", "/dir2/foo"),
    ("/dir1/../../../newdir/foo", "/newdir/foo"),
    ("/dir1/link_rel_dir2/newdir/foo", "/dir2/newdir/foo"),
    ("/dir1/link_abs_dir2/newdir/foo", "/dir2/newdir/foo"),
    ("/dir1/link_abs_notexists/newdir1/newdir2/foo", "/notexists/newdir1/newdir2/foo"),
    ("/dir1/link_abs_root/newdir1/newdir2/foo", "/newdir1/newdir2/foo"),
    ("../" * 15 + "foo", "/foo"),
]  # fmt: skip


@pytest.mark.parametrize(("flavor", "source"), [
    on("coreos", "file"), on("coreos", "folder"), on("kvm", "folder"),
    on("kvm", "file"),
])  # fmt: skip
def test_mount_symlink(flavor: str, source: str, rkt: Rkt, make_image: ImageMaker,
                       tmp_path: Path) -> None:
    """TestMountSymlink (a single-file volume, as rkt's test; also a folder holding it:
    the target's resolution is planned on the host for both flavors)."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "hello").write_text("world")
    src = tmp_path / "src" / "hello" if source == "file" else tmp_path / "src"
    script = " ; ".join(f"cat {where}" + ("" if source == "file" else "/hello") + "; echo"
                        for _, where in MOUNT_SYMLINK)
    args = [f"--volume=test{i},kind=host,source={src}" for i in range(len(MOUNT_SYMLINK))]
    img = image(make_image, script)
    for i, (target, _) in enumerate(MOUNT_SYMLINK):
        args_i = [img, f"--mount=volume=test{i},target={target}"]
        args += args_i if i == 0 else args_i[1:]
    cp = rkt.run(*args)
    assert (cp.returncode, cp.stdout) == (0, "world\n" * len(MOUNT_SYMLINK)), cp.stderr


@pytest.fixture
def nested_mounts(tmp_path: Path) -> Iterator[Path]:
    """rkt's volume-mount fixture: volDir/subDirRW holds "outer" under a tmpfs holding
    "inner" (so recursive binds show "inner", non-recursive ones "outer")."""
    vol = tmp_path / "vol"
    sub = vol / "subDirRW"
    sub.mkdir(parents=True)
    (sub / "file").write_text("outer")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(sub)], check=True)
    (sub / "file").write_text("inner")
    yield vol
    subprocess.run(["umount", "-l", str(sub)], check=True)


@pytest.mark.parametrize(("flavor", "recursive"), [
    on("coreos", True), on("coreos", False), on("kvm", True),
    on("kvm", False),
])  # fmt: skip
def test_volume_mount_recursive(flavor: str, recursive: bool, rkt: Rkt,
                                make_image: ImageMaker, nested_mounts: Path) -> None:
    """rkt_volume_mount_test.go (CLI): a recursive host volume shows what is mounted
    under its source, a non-recursive one what is under the mount; read-only ones of
    both refuse writes."""
    flag = f"--volume=test,kind=host,source={nested_mounts},recursive={str(recursive).lower()}"
    img = image(make_image, "cat /mnt/subDirRW/file")
    assert run(rkt, flag, "--mount=volume=test,target=/mnt", img) == \
        ("inner" if recursive else "outer")
    img = image(make_image, "echo x > /mnt/subDirRW/new")
    out = run(rkt, f"{flag},readOnly=true", "--mount=volume=test,target=/mnt", img, code=1)
    assert "Read-only file system" in out


# kvm: rkt-exec makes the mount point in the app's own mount namespace before the root is
# remounted read-only (on 9p, and on disks, the default with QEMU)
@pytest.mark.parametrize("flavor", [on("coreos"), on("kvm")])
def test_writable_volume_in_a_readonly_rootfs(flavor: str, rkt: Rkt, make_image: ImageMaker,
                                              nested_mounts: Path, tmp_path: Path) -> None:
    """rkt_volume_mount_test.go (pod manifest): read after write in a non-recursive
    volume of an app with a read-only rootfs."""
    image_id = rkt("--insecure-options=image", "fetch", "--full",
                   image(make_image, "true")).stdout.strip()
    pm = {"acKind": "PodManifest", "acVersion": "0.8.11",
          "volumes": [{"name": "mnt", "kind": "host", "source": str(nested_mounts),
                       "recursive": False}],
          "apps": [{"name": "rkt-inspect", "image": {"id": image_id}, "readOnlyRootFS": True,
                    "app": {"exec": ["/bin/sh", "-c", "echo -n host:foo > /mnt/file; "
                                     "cat /mnt/file; touch /elsewhere || echo ro-rootfs"],
                            "user": "0", "group": "0",
                            "mountPoints": [{"name": "mnt", "path": "/mnt"}]}}]}  # fmt: skip
    (tmp_path / "pm.json").write_text(json.dumps(pm))
    out = run(rkt, f"--pod-manifest={tmp_path / 'pm.json'}")
    assert out.startswith("host:foo") and "ro-rootfs" in out
    assert (nested_mounts / "file").read_text() == "host:foo"


@pytest.mark.root
def test_duplicate_volume_name(rkt: Rkt, host_dir: Path) -> None:
    cp = rkt("run", "--net=none", f"--volume=test,kind=host,source={host_dir}",
             "--mount", "volume=test,target=/mnt", "--volume=test,kind=empty", "--mount",
             "volume=test,target=/mnt/dup", "x.aci")
    assert cp.returncode == 254 and "duplicate volume name" in cp.stderr
