"""Root filesystems on disks, the parts without a VM: the rootfs kind's choice, the
QEMU block nodes (one description for the command line and a QMP hot-plug), the guest
script's disk lines, and the checks on the tar an export VM writes."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pyrkt.errors import RktError
from pyrkt.record import replace
from pyrkt.stage1.kvm import diskexport, disks
from pyrkt.stage1.kvm.guest import script
from pyrkt.stage1.kvm.hypervisors.qemu import Qemu, blockdev_nodes, disk_device
from pyrkt.stage1.kvm.vm import Accel, Disk, VmPlan
from pyrkt.stage1.plan import AppPlan, MountPlan, PodPlan, VolumeKind


def plan(*names: str) -> PodPlan:
    apps = tuple(AppPlan(name=n, rootfs=Path("/x"), argv=("/bin/true",), env=())
                 for n in names)
    return PodPlan(uuid="u", hostname="h", apps=apps)


def test_rootfs_kind_flag_over_annotation_over_default() -> None:
    assert disks.rootfs_kind({}) is None  # the default: default_kind
    assert disks.rootfs_kind({disks.ANN_ROOTFS: "block"}) is disks.RootfsKind.BLOCK
    assert disks.rootfs_kind({disks.ANN_ROOTFS: "block"}, "9p") is disks.RootfsKind.NINEP
    with pytest.raises(RktError, match="--kvm-rootfs='disk': not a rootfs kind"):
        disks.rootfs_kind({}, "disk")
    with pytest.raises(RktError, match=f"{disks.ANN_ROOTFS}='x'"):
        disks.rootfs_kind({disks.ANN_ROOTFS: "x"})


def test_the_default_is_disks_with_qemu_for_pods_whose_apps_have_trees(tmp_path: Path) -> None:
    pod = tmp_path / "pod"
    p = plan("a", "b")
    assert disks.default_kind(pod, p, "qemu") is disks.RootfsKind.NINEP  # no trees
    for name in ("a", "b"):
        (pod / "appsinfo" / name).mkdir(parents=True)
        (tmp_path / "trees" / name).mkdir(parents=True)
        (pod / "appsinfo" / name / "tree").write_text(f"{tmp_path / 'trees' / name}\n")
    assert disks.default_kind(pod, p, "qemu") is disks.RootfsKind.BLOCK
    assert disks.default_kind(pod, p, "lkvm") is disks.RootfsKind.NINEP
    (tmp_path / "trees" / "b").rmdir()
    assert disks.default_kind(pod, p, "qemu") is disks.RootfsKind.NINEP


def test_block_nodes_base_read_only_and_only_the_last_layer_writable() -> None:
    d = Disk("rkt-d0", Path("/store/rootfs.ext4"), (Path("/pod/a.qcow2"), Path("/t/top.qcow2")))
    nodes = {n["node-name"]: n for n in blockdev_nodes(d)}
    assert nodes["rkt-d0-base-file"] == {"node-name": "rkt-d0-base-file", "driver": "file",
                                         "filename": "/store/rootfs.ext4", "read-only": True}
    assert nodes["rkt-d0-base"]["read-only"] is True
    assert nodes["rkt-d0-l0"] == {"node-name": "rkt-d0-l0", "driver": "qcow2",
                                  "file": "rkt-d0-l0-file", "backing": "rkt-d0-base",
                                  "read-only": True}
    assert nodes["rkt-d0"]["backing"] == "rkt-d0-l0"
    assert nodes["rkt-d0"]["read-only"] is False
    assert nodes["rkt-d0-file"] == {"node-name": "rkt-d0-file", "driver": "file",
                                    "filename": "/t/top.qcow2", "read-only": False,
                                    "cache": {"no-flush": True}}
    assert [n for n in nodes if "cache" in nodes[n]] == ["rkt-d0-file", "rkt-d0"]
    assert disk_device(d) == {"driver": "virtio-blk-pci", "id": "rkt-d0-dev",
                              "drive": "rkt-d0", "serial": "rkt-d0"}


def test_a_base_alone_is_read_only_unless_scratch() -> None:
    assert [n["read-only"] for n in blockdev_nodes(Disk("a", Path("/b")))] == [True, True]
    assert [n["read-only"] for n in blockdev_nodes(Disk("a", Path("/b"), scratch=True))] == \
        [False, False]


def test_qemu_argv_has_the_same_nodes_as_a_hot_plug() -> None:
    d = Disk("rkt-d0", Path("/s/r,x.ext4"), (Path("/p/a.qcow2"),))
    vp = VmPlan(kernel=Path("/k"), initrd=Path("/i"), cmdline=(), vcpus=1, memory_mib=256,
                accel=Accel.TCG, disks=(d,))
    a = Qemu().argv(vp)
    given = [json.loads(a[i + 1]) for i, x in enumerate(a) if x == "-blockdev"]
    assert given == blockdev_nodes(d)  # a comma in a path needs no escaping in JSON
    devices = [a[i + 1] for i, x in enumerate(a) if x == "-device"]
    assert json.dumps(disk_device(d), separators=(",", ":")) in devices


class FakeQmp:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any] | None]] = []

    def execute(self, command: str, args: dict[str, Any] | None = None) -> Any:
        self.sent.append((command, args))
        return {}


def test_attach_over_qmp_adds_the_nodes_then_the_device() -> None:
    d = Disk("rkt-d1", Path("/s/b"), (Path("/p/l.qcow2"),))
    q = FakeQmp()
    disks.attach_qmp(q, [d])
    assert q.sent == [*(("blockdev-add", n) for n in blockdev_nodes(d)),
                      ("device_add", disk_device(d))]


def test_pod_script_mounts_each_disk_by_serial() -> None:
    text = script.pod_script(plan("web", "db"), disks=script.disk_targets(
        plan("web", "db"), {"db": "rkt-d1"}))
    assert "rkt-d1) rkt_disk_0=/dev/${b##*/} ;;" in text
    assert "rkt_disk_1" not in text  # web stays on the share
    assert 'mount -t ext4 -o noatime,nodev "$rkt_disk_0" /stage1/opt/stage2/db/rootfs ||' in text


def test_a_restored_pod_s_script_waits_for_the_disks_rkt_exec_mounted() -> None:
    """After a restore (rkt-exec --restore made the FIFO, mounts in the background and
    moves each mount into place) the script waits for its word and names the disk that
    failed; after a boot it mounts them itself and sets their read-ahead (the same
    script serves both)."""
    text = script.pod_script(plan("web", "db"), disks=script.disk_targets(
        plan("web", "db"), {"db": "rkt-d0"}))
    restored, booted = text.split("if [ -p /run/rkt-disks/ready ]; then\n", 1)[1].split(
        "\nelse\n", 1)
    assert "read -t 300 -r rkt_res <&8" in restored
    assert "'mount rkt-d0'|'move rkt-d0') { rkt_say 'cannot mount the disk of app db'" \
        in restored
    assert "*) { rkt_say 'the pod'\"'\"'s disks did not appear'" in restored
    assert "mount" not in restored.replace("cannot mount", "").replace("'mount rkt", "")
    assert "read_ahead_kb" not in restored  # rkt-exec set it
    assert "mount -t ext4" in booted
    assert "/stage1/opt/stage2/db/rootfs) echo 2048 >" in booted
    assert text.index("mount -t ext4") < text.index("# app web")


def test_the_disks_targets_are_the_apps_rootfs_read_ahead_and_the_volumes() -> None:
    targets = script.disk_targets(plan("web", "db"), {"db": "rkt-d0"}, {"tmp": "rkt-d1"})
    assert targets == [
        script.DiskTarget("rkt-d0", "/stage1/opt/stage2/db/rootfs", "app db",
                          script.ROOTFS_READ_AHEAD_KB),
        script.DiskTarget("rkt-d1", "/run/rkt-volumes/tmp", "volume tmp", 0)]


def test_an_empty_volume_on_a_disk_is_mounted_once_and_bound_not_shared() -> None:
    tmp = MountPlan(volume="tmp", kind=VolumeKind.EMPTY, source=Path("/pod/volumes/tmp"),
                    target="/data", read_only=True)
    p = replace(plan("a"), apps=(replace(plan("a").apps[0], mounts=(tmp,)),))
    assert script.mount_tags(p, ("tmp",)) == {}
    text = script.pod_script(p, disks=script.disk_targets(p, {"a": "rkt-d0"},
                                                             {"tmp": "rkt-d1"}))
    assert "rkt-d1) rkt_disk_1=" in text
    assert 'mount -t ext4 -o noatime,nodev "$rkt_disk_1" /run/rkt-volumes/tmp ||' in text
    assert "9p" not in text
    # rkt-exec binds it from there into the app's own mount namespace (read-only here).
    steps = script.app_mounts(p.apps[0], script.mount_tags(p, ("tmp",))).splitlines()
    assert "mount /run/rkt-volumes/tmp /data none bind,ro,mkdir" in steps
    assert not [s for s in steps if " 9p " in s]


def guest_tar(members: list[tuple[str, bytes | None, str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data, link in members:
            m = tarfile.TarInfo(name)
            if link:
                m.type, m.linkname = tarfile.LNKTYPE, link
                t.addfile(m)
            elif data is None:
                m.type = tarfile.DIRTYPE
                t.addfile(m)
            else:
                m.size = len(data)
                t.addfile(m, io.BytesIO(data))
    return buf.getvalue()


def copy(tmp_path: Path, raw: bytes) -> list[str]:
    g = tmp_path / "guest.tar"
    g.write_bytes(raw + b"\0" * 65536)  # the scratch disk's zeros after the archive
    with tarfile.open(tmp_path / "out.tar", "w") as dst:
        diskexport.copy_members(g, dst)
    with tarfile.open(tmp_path / "out.tar") as t:
        return t.getnames()


def test_export_copies_the_rootfs_members(tmp_path: Path) -> None:
    names = copy(tmp_path, guest_tar([("rootfs", None, ""), ("rootfs/a", b"x", ""),
                                      ("rootfs/b", None, "rootfs/a")]))
    assert names == ["rootfs", "rootfs/a", "rootfs/b"]


@pytest.mark.parametrize("name,link", [("manifest", ""), ("rootfs/../manifest", ""),
                                       ("/rootfs/x", ""), ("rootfs/h", "manifest")])
def test_export_refuses_a_member_outside_rootfs(tmp_path: Path, name: str, link: str) -> None:
    with pytest.raises(RktError, match="outside rootfs/"):
        copy(tmp_path, guest_tar([("rootfs", None, ""), (name, b"evil", link)]))


def test_export_refuses_an_empty_tar(tmp_path: Path) -> None:
    with pytest.raises(RktError, match="empty"):
        copy(tmp_path, b"")


def test_the_guests_word_on_a_failed_start_is_bounded_printable_and_no_link(
        tmp_path: Path) -> None:
    from pyrkt.stage1.kvm.finish import FAILED_MAX_BYTES, guest_failure

    ctl = tmp_path / "kvm" / "ctl"
    ctl.mkdir(parents=True)
    assert guest_failure(tmp_path) is None
    (ctl / "failed").write_bytes(b"no disk\x1b[2J\xff\n")
    assert guest_failure(tmp_path) == "no disk?[2J?"
    (ctl / "failed").write_bytes(b"x" * (FAILED_MAX_BYTES + 1))
    assert guest_failure(tmp_path) is None  # too long: refused, not cut
    (ctl / "failed").unlink()
    (tmp_path / "secret").write_text("host file\n")
    (ctl / "failed").symlink_to(tmp_path / "secret")
    assert guest_failure(tmp_path) is None


def test_qemus_jail_sees_the_disks_files_only_the_last_layer_writable() -> None:
    from pyrkt.stage1.kvm import jail

    d = Disk("rkt-d0", Path("/store/t/rootfs.ext4"), (Path("/pod/kvm/disks/a.qcow2"),
                                                       Path("/tmp/x/top.qcow2")))
    out = Disk("rkt-out", Path("/tmp/x/rootfs.tar"), scratch=True)
    vp = VmPlan(kernel=Path("/k"), initrd=Path("/i"), cmdline=(), vcpus=1, memory_mib=256,
                accel=Accel.TCG, disks=(d, out))
    files = dict(jail.for_pod(Path("/pod"), vp, ()).files)
    assert files[Path("/store/t/rootfs.ext4")] is jail.Access.RO
    assert files[Path("/pod/kvm/disks/a.qcow2")] is jail.Access.RO
    assert files[Path("/tmp/x/top.qcow2")] is jail.Access.RW
    assert files[Path("/tmp/x/rootfs.tar")] is jail.Access.RW


def test_qemus_jail_sees_the_files_of_disks_in_a_template_s_slots() -> None:
    """A restored pod's disks in its template's slots are files QEMU opens at its
    start: its jail holds them as for a boot (the empty slots have no file)."""
    from pyrkt.stage1.kvm import jail

    d = Disk("rkt-d0", Path("/store/t/rootfs.ext4"), (Path("/pod/kvm/disks/a.qcow2"),))
    vp = VmPlan(kernel=Path("/k"), initrd=Path("/i"), cmdline=(), vcpus=1, memory_mib=256,
                accel=Accel.TCG, disk_slots=(d, None))
    files = dict(jail.for_pod(Path("/pod"), vp, ()).files)
    assert files[Path("/store/t/rootfs.ext4")] is jail.Access.RO
    assert files[Path("/pod/kvm/disks/a.qcow2")] is jail.Access.RW
