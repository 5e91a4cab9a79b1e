"""`rkt image rm` of an image a running pod uses, as rkt did it: the image leaves the
store's index at once, the pod keeps its files (the rendered tree stays), and `rkt image
gc` removes the tree only once no pod that is not garbage uses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import _container_pod as cp
import pytest

from pyrkt.linux.cgroup import PodCgroups
from support import images
from support.images import oci_layout, write_aci

pytestmark = pytest.mark.root

MANIFEST = """{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/rm-me",
"labels":[{"name":"version","value":"1.0"},{"name":"arch","value":"amd64"},
{"name":"os","value":"linux"}],
"app":{"exec":["/bin/sh","-c","echo default-exec"],"user":"0","group":"0"}}"""


def rkt(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyrkt", f"--dir={data}", *args],
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def test_image_rm_keeps_a_running_pods_files_until_image_gc(tmp_path: Path) -> None:
    work = tmp_path / "aci"
    cp.busybox_rootfs(work / "rootfs")
    (work / "rootfs" / "etc").mkdir(exist_ok=True)
    (work / "rootfs" / "etc" / "marker").write_text("still here\n")
    aci = write_aci(work, MANIFEST, "rm-me.aci")
    data = tmp_path / "rkt"
    fetched = rkt(data, "--insecure-options=image", "fetch", "--full", str(aci))
    assert fetched.returncode == 0, fetched.stderr
    image_id = fetched.stdout.strip()
    tree = data / "cas" / "trees" / image_id
    uuid_file = tmp_path / "uuid"
    pod = subprocess.Popen(
        [sys.executable, "-m", "pyrkt", f"--dir={data}", "run", "--net=none",
         f"--uuid-file-save={uuid_file}", image_id, "--exec", "/bin/sh", "--", "-c",
         "echo started; exec sleep 1000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    uuid = ""
    try:
        assert pod.stdout is not None
        assert pod.stdout.readline() == "started\n", pod.stderr
        uuid = uuid_file.read_text().strip()

        rm = rkt(data, "image", "rm", image_id)
        assert rm.returncode == 0, rm.stderr
        assert f'successfully removed aci for image ID: "{image_id}"' in rm.stdout
        assert image_id[:19] not in rkt(data, "image", "list", "--no-legend").stdout
        gone = rkt(data, "image", "cat-manifest", image_id)
        assert gone.returncode == 254 and "no image" in gone.stderr

        # the pod still sees its image's files, also after an image gc
        assert rkt(data, "image", "gc", "--grace-period=0s").returncode == 0
        seen = rkt(data, "enter", uuid, "/bin/cat", "/etc/marker")
        assert (seen.returncode, seen.stdout) == (0, "still here\n"), seen.stderr
        assert (tree / "rootfs" / "etc" / "marker").is_file()

        assert rkt(data, "stop", uuid).returncode == 0
        pod.wait(timeout=60)
    finally:
        if pod.poll() is None:
            pod.kill()
            pod.wait()
        if uuid:
            PodCgroups(uuid).destroy()

    # a pod that has exited but is not garbage collected yet still holds the tree
    assert rkt(data, "image", "gc", "--grace-period=0s").returncode == 0
    assert tree.is_dir()
    assert rkt(data, "gc", "--grace-period=0s").returncode == 0
    gc = rkt(data, "image", "gc", "--grace-period=0s")
    assert gc.returncode == 0, gc.stderr
    assert image_id in gc.stdout
    assert not tree.exists()


def test_refetch_of_a_removed_image_reuses_the_tree_a_pod_holds(tmp_path: Path) -> None:
    layout = tmp_path / "oci"
    oci_layout(layout, [images.busybox_rootfs(tmp_path / "root")], images.BULK_CONFIG)
    data = tmp_path / "rkt"
    ref = f"oci:{layout}:latest"
    image_id = rkt(data, "fetch", "--full", ref).stdout.strip()
    tree = data / "cas" / "trees" / image_id
    pod = data / "pods" / "prepared" / "2b0e7a52-0000-4000-8000-000000000001"
    (pod / "appsinfo" / "busybox").mkdir(parents=True)  # what `rkt prepare` records
    (pod / "appsinfo" / "busybox" / "tree").write_text(str(tree.absolute()))
    inode = (tree / "rootfs" / "bin" / "busybox").stat().st_ino
    assert rkt(data, "image", "rm", image_id).returncode == 0
    assert (tree / "rootfs" / "bin" / "busybox").stat().st_ino == inode
    again = rkt(data, "fetch", "--full", ref)
    assert (again.returncode, again.stdout.strip()) == (0, image_id), again.stderr
    assert (tree / "rootfs" / "bin" / "busybox").stat().st_ino == inode
    assert rkt(data, "image", "list", "--no-legend", "--full",
               "--fields=id").stdout.split() == [image_id]  # fmt: skip
