"""What a pod wrote is hostile to the host: planted status files, entrypoints, symlinked
folders and deep trees in an exited pod's folder, run through `rkt status`, `rkt list`,
`rkt gc`, `rkt export`, `rkt enter` and `rkt stop`. Nothing outside the pod may be read,
written or run, and every verb stays bounded in memory and time.

A planted file in the pod folder stands for what a VM pod's guest writes on its shares
(the stage1 share's overlay upper folder, a --no-overlay copy): the host reads the same
files. The pods are run with the small test stage1 of test_pods_lifecycle."""

from __future__ import annotations

import os
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from test_pods_lifecycle import Rkt, acis, only_uuid, rkt  # noqa: F401 (fixtures)

pytestmark = pytest.mark.root

MEMORY_LIMIT = 1 << 30  # address space for each verb: /dev/zero read whole would pass it


def bounded(r: Rkt, *args: str) -> subprocess.CompletedProcess[str]:
    """`rkt ARGS` with 1 GiB of address space and a minute: an unbounded read of
    /dev/zero or a huge file fails the first, a FIFO read the second."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    cp = subprocess.run(r.argv(*args), capture_output=True, text=True, timeout=60,
                        preexec_fn=limit, stdin=subprocess.DEVNULL)
    print(f"$ rkt {' '.join(args)}\n-> {cp.returncode}\n{cp.stdout}{cp.stderr}")
    return cp


def stamp(d: Path) -> tuple[int, list[str]]:
    return d.stat().st_mtime_ns, sorted(os.listdir(d))


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """Host files a pod must never reach; status/busybox holds an exit code 7."""
    h = tmp_path / "host"
    (h / "status").mkdir(parents=True)
    (h / "status" / "busybox").write_text("7\n")
    (h / "secret").write_text("7\n")
    return h


def _link_to_host_file(status: Path, host: Path) -> None:
    (status / "busybox").symlink_to(host / "secret")


def _link_to_dev_zero(status: Path, host: Path) -> None:
    (status / "busybox").symlink_to("/dev/zero")


def _fifo(status: Path, host: Path) -> None:
    os.mkfifo(status / "busybox")


def _huge(status: Path, host: Path) -> None:
    with open(status / "busybox", "wb") as f:
        f.write(b"7")
        f.truncate(16 << 30)  # sparse


def _symlinked_folder(status: Path, host: Path) -> None:
    for f in status.iterdir():
        f.unlink()
    status.rmdir()
    status.symlink_to(host / "status")


ATTACKS: dict[str, Callable[[Path, Path], None]] = {
    "link-to-host-file": _link_to_host_file, "link-to-dev-zero": _link_to_dev_zero,
    "fifo": _fifo, "huge-file": _huge, "symlinked-status-folder": _symlinked_folder,
}


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("overlay", [True, False], ids=["overlay", "no-overlay"])
def test_status_and_list_read_no_planted_status_file(
    rkt: Rkt, acis: dict[str, Path], host: Path, attack: str, overlay: bool  # noqa: F811
) -> None:
    flags = [] if overlay else ["--no-overlay"]
    assert rkt.run(*flags, str(acis["app"]), "--exec=/bin/sh", "--", "-c", "exit 3"
                   ).returncode == 3
    uuid = only_uuid(rkt)
    pod = rkt.dir / "pods/run" / uuid
    status = pod / ("overlay/stage1/upper" if overlay else "stage1/rootfs") / "rkt/status"
    assert (status / "busybox").read_text() == "3"
    (status / "busybox").unlink()
    ATTACKS[attack](status, host)

    st = bounded(rkt, "status", uuid)
    assert st.returncode == 0, st.stderr
    assert "state=exited" in st.stdout.splitlines()
    assert not any(ln.startswith("app-busybox=") for ln in st.stdout.splitlines())
    js = bounded(rkt, "status", "--format=json", uuid)
    assert js.returncode == 0 and '"exit_code": 7' not in js.stdout, js.stderr
    ls = bounded(rkt, "list", "--no-legend", "--full")
    assert ls.returncode == 0 and uuid in ls.stdout, ls.stderr


def test_gc_removes_a_deep_tree_and_nothing_its_links_point_to(
    rkt: Rkt, acis: dict[str, Path], host: Path  # noqa: F811
) -> None:
    assert rkt.run(str(acis["app"]), "--exec=/bin/true").returncode == 0
    uuid = only_uuid(rkt)
    upper = rkt.dir / "pods/run" / uuid / "overlay/busybox/upper"
    (upper / "to-host").symlink_to(host)
    (upper / "to-secret").symlink_to(host / "secret")
    fd = os.open(upper, os.O_RDONLY | os.O_DIRECTORY)
    try:  # deeper than Python's recursion limit (shutil.rmtree recurses)
        for _ in range(1500):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.symlink(str(host), "leaf-link", dir_fd=fd)
    finally:
        os.close(fd)
    before = stamp(host)
    try:
        g = bounded(rkt, "gc", "--grace-period=0s")
        assert g.returncode == 0, g.stderr
        assert "Traceback" not in g.stderr
        assert not list((rkt.dir / "pods").glob("*/*")), "the pod was not removed"
        assert stamp(host) == before and (host / "secret").read_text() == "7\n"
    finally:  # a deep tree left behind would break pytest's own cleanup of tmp folders
        from pyrkt.linux import beneath

        for pod in (rkt.dir / "pods").glob("*/*"):
            beneath.remove_tree(pod)


def test_gc_enter_and_stop_run_the_stage1_images_entrypoints_not_the_pods_copy(
    rkt: Rkt, acis: dict[str, Path], tmp_path: Path  # noqa: F811
) -> None:
    """With --no-overlay the stage1 rootfs is the pod's own copy, which the pod (a VM
    pod's guest) can rewrite: the verbs after `run` take the entrypoints from the stage1
    image's tree."""
    from test_pods_lifecycle import _wait_running

    marker = tmp_path / "planted-ran"
    planted = f"#!/bin/sh\necho \"$0 $*\" >> {marker}\n"

    def plant(pod: Path) -> None:
        for verb in ("enter", "stop", "gc"):
            (pod / "stage1/rootfs" / verb).write_text(planted)
            (pod / "stage1/rootfs" / verb).chmod(0o755)

    uf = tmp_path / "uuid"
    rkt.start("--no-overlay", f"--uuid-file-save={uf}", str(acis["app"]), "--exec=/bin/sleep",
              "--", "60")
    uuid = _wait_running(rkt, uf)
    plant(rkt.dir / "pods/run" / uuid)
    e = rkt("enter", uuid, "/bin/echo", "hi")
    assert e.returncode == 0 and e.stdout.startswith("enter "), e.stderr  # the image's
    assert rkt("stop", uuid).returncode == 0
    g = rkt("gc", "--grace-period=0s")
    assert g.returncode == 0, g.stderr
    assert (rkt.dir / f"gc-called-{uuid}").exists()  # the image's gc ran
    assert not marker.exists(), marker.read_text()


def test_export_of_a_no_overlay_pod_reads_nothing_outside_it(
    rkt: Rkt, acis: dict[str, Path], tmp_path: Path  # noqa: F811
) -> None:
    assert rkt.run("--no-overlay", str(acis["app"]), "--exec=/bin/true").returncode == 0
    uuid = only_uuid(rkt)
    s1 = rkt.dir / "pods/run" / uuid / "stage1/rootfs"
    # The pod swaps its opt/ for a link to a host folder shaped like it.
    outside = tmp_path / "outside"
    (outside / "stage2/busybox/rootfs").mkdir(parents=True)
    (outside / "stage2/busybox/rootfs/host-secret").write_text("host\n")
    (s1 / "opt").rename(s1 / "opt.real")
    (s1 / "opt").symlink_to(outside)
    out = tmp_path / "out.aci"
    x = bounded(rkt, "export", uuid, str(out))
    assert x.returncode == 254, x.stdout
    listing = subprocess.run(["tar", "-tf", str(out)], capture_output=True, text=True).stdout
    assert "host-secret" not in listing
    # Put back, the export works (the fix did not break it).
    (s1 / "opt").unlink()
    (s1 / "opt.real").rename(s1 / "opt")
    assert bounded(rkt, "export", uuid, str(out)).returncode == 0
    names = subprocess.run(["tar", "-tf", str(out)], capture_output=True, text=True).stdout
    assert "rootfs/bin/busybox" in names.split() and "manifest" in names.split()
