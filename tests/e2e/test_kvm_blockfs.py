"""VM pods whose apps' rootfs are disks (`--kvm-rootfs=block`, docs/kvm.md "Root
filesystems on disks"), end to end under QEMU: unix sockets and FIFOs in /tmp, /var/run
and an empty volume (as in a container pod, unlike 9p), what a local disk keeps (hard
links, device nodes, owners, modes, holes), exit codes, `rkt enter`, `rkt status`,
`rkt export` of what the pod wrote, and nothing left on the host after `rkt gc`, also
when the VM was killed."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import tarfile
import time
from pathlib import Path

import kvm_helpers as kh
import pytest
import test_kvm_gaps as gaps
import test_kvm_rkt as base
from test_kvm_rkt import Rkt

from pyrkt.image import fsimage
from pyrkt.stage1.kvm.guest import script

pytestmark = [pytest.mark.qemu, pytest.mark.root]

stage1 = base.stage1  # the module fixtures of test_kvm_rkt and test_kvm_gaps
accel_env = base.accel_env
rkt = base.rkt
image = gaps.image  # busybox with every applet, usock (a unix socket server and client)

BLOCK = "--kvm-rootfs=block"
ANN_ROOTFS = "--annotation=coreos.com/rkt/stage1/kvm/rootfs=block"

# A server on a unix socket and a FIFO carrying a line, in each folder given.
SOCKETS = r"""
for d in "$@"; do
  mkdir -p "$d"
  usock serve "$d/sock" &
  timeout 60 sh -c "until [ -S $d/sock ]; do sleep 0.1; done"
  usock send "$d/sock" "hi-$d"
  wait $! && echo "served $d"
  mkfifo "$d/fifo" || continue
  timeout 60 sh -c "echo through > $d/fifo" &
  echo "fifo $d $(timeout 60 cat $d/fifo)/$(stat -c %F $d/fifo)"
  wait $!
done
"""
PLACES = ("/tmp", "/var/run/x", "/vol")
EXPECTED = [line for d in PLACES for line in
            (f"reply hi-{d}", f"served {d}", f"fifo {d} through/fifo")]


def test_sockets_and_fifos_on_disks_as_in_a_container_pod(rkt: Rkt, image: Path) -> None:
    """The same program under the container stage1 and in a VM pod on disks: a server
    answers on its unix socket, and a FIFO carries a line, in /tmp, /var/run/x and an
    empty volume."""
    args = ["--volume=vol,kind=empty", str(image), "--mount=volume=vol,target=/vol",
            "--exec", "/bin/sh", "--", "-c", SOCKETS, "sockets", *PLACES]
    r = rkt.run(BLOCK, *args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == EXPECTED, r.stdout + r.stderr
    c = rkt("run", "--insecure-options=image", "--net=none", *args)
    assert c.returncode == 0, c.stderr
    assert c.stdout.splitlines() == EXPECTED, c.stdout


READ_AHEAD = ("for m in / /vol; do d=$(awk -v m=$m '$5 == m {print $3; exit}' "
              "/proc/self/mountinfo); echo $m $(cat /sys/dev/block/$d/queue/read_ahead_kb); done")


def test_the_apps_rootfs_disk_reads_ahead_more_than_a_volume(rkt: Rkt, image: Path) -> None:
    """An app's rootfs disk reads 2 MiB ahead (its programs' page faults: fewer round
    trips through QEMU), a volume's disk the kernel's default, whether the VM booted or
    was restored from a template (its disks mounted by rkt-exec, then moved)."""
    for template in ("off", "on", "on"):  # booted; the template's first pod; restored
        r = rkt.run(BLOCK, f"--kvm-template={template}", "--volume=vol,kind=empty",
                    str(image), "--mount=volume=vol,target=/vol",
                    "--exec", "/bin/sh", "--", "-c", READ_AHEAD)
        assert r.returncode == 0, r.stderr + kh.all_diagnostics(rkt.dir)
        assert r.stdout.splitlines() == [
            f"/ {script.ROOTFS_READ_AHEAD_KB}", "/vol 128"], (template, r.stdout)

# What a local disk keeps: hard links (from the image and new), device nodes (made, kept,
# not opened: the disk is nodev, the guest has no devices cgroup), owners, modes with
# setuid, holes, FIFOs from the image; then the app's exit code.
FILE_KINDS = r"""
stat -c %h /img/h1
[ "$(stat -c %i /img/h1)" = "$(stat -c %i /img/h2)" ] && echo image-hardlink-shared
stat -c '%F %t:%T' /img/null-copy
stat -c %F /img/fifo
echo data > /srv/a && ln /srv/a /srv/b && echo more >> /srv/b && cat /srv/a
mknod /srv/zero c 1 5 && stat -c '%F %t:%T' /srv/zero
head -c 4 /srv/zero 2>/dev/null || echo "a node on the disk does not open (nodev)"
chown 12:34 /srv/a && chmod 4750 /srv/a && stat -c '%u %g %a' /srv/a
dd if=/dev/zero of=/srv/sparse bs=1 count=1 seek=1073741824 2>/dev/null
echo "sparse $(stat -c %s /srv/sparse) $(du -k /srv/sparse | cut -f1)"
awk '$2 == "/" {print "root on", $3}' /proc/mounts
exit 7
"""


def test_a_disk_keeps_what_a_local_disk_keeps(rkt: Rkt, image_with_nodes: Path,
                                              tmp_path: Path) -> None:
    uuid_file = tmp_path / "uuid"
    r = rkt.run(BLOCK, f"--uuid-file-save={uuid_file}", str(image_with_nodes), "--exec",
                "/bin/sh", "--", "-c", FILE_KINDS)
    assert r.returncode == 7, r.stderr
    assert r.stdout.splitlines() == [
        "2",
        "image-hardlink-shared",
        "character special file 1:3",
        "fifo",
        "data", "more",
        "character special file 1:5",
        "a node on the disk does not open (nodev)",
        "12 34 4750",
        "sparse 1073741825 4",
        "root on ext4",
    ], r.stdout
    st = rkt("status", uuid_file.read_text().strip())
    assert "app-busybox=7" in st.stdout.splitlines(), st.stdout


@pytest.fixture(scope="module")
def image_with_nodes(image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image plus /img with a hard-linked pair, a device node and a FIFO, and /srv."""
    out = tmp_path_factory.mktemp("aci-nodes") / "nodes.aci"
    with tarfile.open(image) as src, tarfile.open(out, "w") as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        for name in ("rootfs/img", "rootfs/srv"):
            d = tarfile.TarInfo(name)
            d.type, d.mode = tarfile.DIRTYPE, 0o755
            dst.addfile(d)
        f = tarfile.TarInfo("rootfs/img/h1")
        f.size = 3
        dst.addfile(f, io.BytesIO(b"hl\n"))
        h = tarfile.TarInfo("rootfs/img/h2")
        h.type, h.linkname = tarfile.LNKTYPE, "rootfs/img/h1"
        dst.addfile(h)
        n = tarfile.TarInfo("rootfs/img/null-copy")
        n.type, n.mode, n.devmajor, n.devminor = tarfile.CHRTYPE, 0o666, 1, 3
        dst.addfile(n)
        fifo = tarfile.TarInfo("rootfs/img/fifo")
        fifo.type, fifo.mode = tarfile.FIFOTYPE, 0o644
        dst.addfile(fifo)
    return out


def test_enter_and_export_of_a_pod_on_disks(rkt: Rkt, image: Path, tmp_path: Path) -> None:
    """`rkt enter` sees the disk; `rkt export` of the exited pod has what it wrote (and
    not what it removed), read back by a VM, never mounted on the host."""
    uuid_file = tmp_path / "uuid"
    # /etc/last is written an instant before the VM powers off: the guest's page cache
    # must reach the disk without a sync of ours (the guest init's halter syncs).
    script = ("trap 'echo bye > /etc/last; exit 3' TERM; echo written > /etc/written; "
              "mkfifo /etc/fifo; "
              "ln /etc/written /etc/link; rm /bin/awk; echo ready; "
              "while :; do sleep 0.2; done")
    p = rkt.start(ANN_ROOTFS, f"--uuid-file-save={uuid_file}", str(image), "--exec",
                  "/bin/sh", "--", "-c", script)
    uuid = rkt.wait_running(uuid_file)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    e = rkt("enter", uuid, "/bin/sh", "-c", "cat /etc/written; touch /tmp/go")
    assert (e.returncode, e.stdout) == (0, "written\n"), e.stderr
    s = rkt("stop", uuid)
    assert s.returncode == 0, s.stderr
    _, err = p.communicate(timeout=300)
    assert p.returncode == 3, err
    out = tmp_path / "out.aci"
    x = rkt("--debug", "export", uuid, str(out), timeout=900)
    assert x.returncode == 0, x.stderr + kh.all_diagnostics(rkt.dir)
    assert "rkt-jail" in x.stderr  # the export VM's QEMU is confined as a pod's
    with tarfile.open(out) as t:
        names = t.getnames()
        assert names[0] == "manifest"
        assert json.loads(t.extractfile("manifest").read())["name"] == "example.com/busybox"  # type: ignore[union-attr]
        f = t.extractfile("rootfs/etc/written")
        assert f is not None and f.read() == b"written\n"
        assert t.getmember("rootfs/etc/fifo").isfifo()
        last = t.extractfile("rootfs/etc/last")
        assert last is not None and last.read() == b"bye\n"
        link = t.getmember("rootfs/etc/link")
        assert (link.islnk() and link.linkname == "rootfs/etc/written") or \
            t.getmember("rootfs/etc/written").islnk()
        assert "rootfs/bin/sh" in names and "rootfs/bin/awk" not in names
        assert "rootfs/tmp/go" in names
        assert not [n for n in names if n != "manifest" and not n.startswith("rootfs")]
    # The pod's layer stays with the pod (until gc); the export left nothing.
    pod = next(d for d in kh.pod_dirs(rkt.dir) if d.name == uuid)
    assert _left_on_host(rkt.dir) == [f"layer {pod}/kvm/disks/busybox.qcow2"]
    assert not list(rkt.dir.glob("rkt-export-*"))


def _left_on_host(d: Path) -> list[str]:
    """Loop or nbd devices, mounts, QEMUs and pods' disk layers of rkt dir d (the empty
    layers and filesystem images kept per image in the cache and the store are not)."""
    left = []
    for b in Path("/sys/block").glob("loop*"):
        bf = b / "loop" / "backing_file"
        if bf.exists() and str(d) in bf.read_text():
            left.append(f"loop {b.name}: {bf.read_text().strip()}")
    for b in Path("/sys/block").glob("nbd*"):
        if (b / "pid").exists():
            left.append(f"nbd {b.name} connected")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if str(d) in line.split()[4] or str(d) in line:
            left.append(f"mount {line}")
    left += [f"qemu {pid}" for pid in kh.qemu_pids_for(str(d))]
    left += [f"layer {p}" for p in (d / "pods").rglob("*.qcow2")]
    return left


def test_twenty_pods_on_disks_leave_nothing_after_gc(rkt: Rkt, image: Path,
                                                     tmp_path: Path) -> None:
    """20 pods in a row, and one whose VM and `rkt run` are killed with SIGKILL while it
    runs: after `rkt gc` no pod, disk layer, loop or nbd device, mount or QEMU is left."""
    for i in range(20):
        r = rkt.run(BLOCK, str(image), "--exec", "/bin/sh", "--", "-c", f"echo {i} > /tmp/n")
        assert r.returncode == 0, f"pod {i}: {r.stderr}"
    uuid_file = tmp_path / "uuid"
    p = rkt.start(BLOCK, f"--uuid-file-save={uuid_file}", str(image), "--exec",
                  "/bin/sleep", "--", "600")
    uuid = rkt.wait_running(uuid_file)
    pod = next(d for d in kh.pod_dirs(rkt.dir) if d.name == uuid)
    assert list(pod.glob("kvm/disks/*.qcow2")), kh.all_diagnostics(rkt.dir)
    for pid in kh.qemu_pids_for(str(pod)):
        os.kill(pid, signal.SIGKILL)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    deadline = time.monotonic() + 120
    while kh.qemu_pids_for(str(pod)) and time.monotonic() < deadline:
        time.sleep(0.2)
    g = rkt("gc", "--grace-period=0s", timeout=600)
    assert g.returncode == 0, g.stderr
    assert kh.pod_dirs(rkt.dir) == []
    assert not _left_on_host(rkt.dir), _left_on_host(rkt.dir)
    # The image's filesystem image stays in the store (it is the image's, not a pod's).
    assert list((rkt.dir / "cas" / "trees").glob(f"*/{fsimage.NAME}"))


def _restored_cmdline(rkt: Rkt, uuid: str) -> str:
    pod = next(d for d in kh.pod_dirs(rkt.dir) if d.name == uuid)
    cmdline = (pod / "kvm" / "cmdline").read_text()
    assert "-incoming defer" in cmdline, cmdline  # restored, not booted
    return cmdline


def _slots(cmdline: str) -> list[str]:
    """The serial numbers of the template's disk slots, in order, on a QEMU command line
    (rkt-slotN: an empty one)."""
    return re.findall(r'"id":"rkt-slot\d+","drive":"[^"]+","serial":"([^"]+)"', cmdline)


def test_a_pod_restored_from_a_template_has_its_disks_in_the_template_s_slots(
        rkt: Rkt, image: Path, tmp_path: Path) -> None:
    """A VM template and disks together (--kvm-template=on, rootfs=block): the pod's QEMU
    is restored from a template whose disk slots were probed empty at its boot; the
    pod's disks (the app's rootfs, an empty volume) are behind its first slots, on its
    command line (no hot-plug): a unix socket and a FIFO work in /tmp and in the
    volume, the exit code comes back, and after `rkt gc` no pod, disk layer, loop or nbd
    device, mount, QEMU, template or template RAM file of it is left."""
    from pyrkt.stage1.kvm.templates import shape, store

    uuid_file = tmp_path / "uuid"
    places = ("/tmp", "/vol")
    r = rkt.run(BLOCK, "--kvm-template=on", f"--uuid-file-save={uuid_file}",
                "--volume=vol,kind=empty", str(image), "--mount=volume=vol,target=/vol",
                "--exec", "/bin/sh", "--", "-c",
                SOCKETS + "awk '$2 == \"/\" {print \"root on\", $3}' /proc/mounts; exit 9",
                "sockets", *places)
    assert r.returncode == 9, r.stderr + kh.all_diagnostics(rkt.dir)
    assert r.stdout.splitlines() == [
        *(line for d in places for line in
          (f"reply hi-{d}", f"served {d}", f"fifo {d} through/fifo")),
        "root on ext4",
    ], r.stdout + kh.all_diagnostics(rkt.dir)
    uuid = uuid_file.read_text().strip()
    cmdline = _restored_cmdline(rkt, uuid)
    assert _slots(cmdline) == ["rkt-d0", "rkt-d1"] + [
        f"rkt-slot{i}" for i in range(2, shape.SLOTS)], cmdline
    pod = next(d for d in kh.pod_dirs(rkt.dir) if d.name == uuid)
    assert sorted(p.name for p in pod.glob("kvm/disks/*.qcow2")) == [
        "busybox.qcow2", "volume-vol.qcow2"]
    assert "app-busybox=9" in rkt("status", uuid).stdout.splitlines()
    g = rkt("gc", "--grace-period=0s", timeout=600)
    assert g.returncode == 0, g.stderr
    assert kh.pod_dirs(rkt.dir) == []
    assert not _left_on_host(rkt.dir), _left_on_host(rkt.dir)
    templates = rkt.dir / "cache" / store.STORE
    assert not [p for p in templates.glob("*") if not p.name.endswith(".lock")]
    assert not kh.template_ram_of(rkt.dir)


def test_pods_restored_from_one_template_each_see_only_their_own_disk(
        rkt: Rkt, image: Path, tmp_path: Path) -> None:
    """Two pods restored one after the other from the same template (the same RAM file,
    the same empty slots) each write a file on their rootfs: each sees its own and not
    the other's, while it runs and in `rkt export` of it afterwards."""
    seen: dict[str, str] = {}
    for name in ("first", "second"):
        uuid_file = tmp_path / f"uuid-{name}"
        r = rkt.run(BLOCK, "--kvm-template=on", f"--uuid-file-save={uuid_file}", str(image),
                    "--exec", "/bin/sh", "--", "-c",
                    f"mkdir -p /mine; ls /mine; echo {name} > /mine/{name}; ls /mine",
                    debug=True)
        assert r.returncode == 0, r.stderr + kh.all_diagnostics(rkt.dir)
        assert r.stdout.split() == [name], r.stdout + kh.all_diagnostics(rkt.dir)
        found = re.search(r"restored from template (\w+) in \d+ ms", r.stderr)
        assert found, r.stderr
        seen[name] = found.group(1)
        uuid = uuid_file.read_text().strip()
        assert _slots(_restored_cmdline(rkt, uuid))[0] == "rkt-d0"
        out = tmp_path / f"{name}.aci"
        x = rkt("export", uuid, str(out), timeout=900)
        assert x.returncode == 0, x.stderr + kh.all_diagnostics(rkt.dir)
        with tarfile.open(out) as t:
            mine = sorted(n for n in t.getnames() if n.startswith("rootfs/mine/"))
            f = t.extractfile(f"rootfs/mine/{name}")
            assert f is not None and f.read() == f"{name}\n".encode()
        assert mine == [f"rootfs/mine/{name}"], mine
    assert seen["first"] == seen["second"], seen


def test_a_pod_with_more_disks_than_slots_gets_the_others_hot_plugged(
        rkt: Rkt, image: Path, tmp_path: Path) -> None:
    """An app and as many `empty` volumes as a template has disk slots: the last disk has
    no slot and is hot-plugged after the restore; every disk is mounted and works."""
    from pyrkt.stage1.kvm.templates import shape

    vols = [f"v{i}" for i in range(shape.SLOTS)]
    args = [a for v in vols for a in (f"--volume={v},kind=empty",)]
    mounts = [f"--mount=volume={v},target=/{v}" for v in vols]
    places = [f"/{v}" for v in vols]
    uuid_file = tmp_path / "uuid"
    r = rkt.run(BLOCK, "--kvm-template=on", f"--uuid-file-save={uuid_file}", *args,
                str(image), *mounts, "--exec", "/bin/sh", "--", "-c",
                SOCKETS + "awk '$2 ~ \"^/v\" {print $2, $3}' /proc/mounts | sort",
                "sockets", *places)
    assert r.returncode == 0, r.stderr + kh.all_diagnostics(rkt.dir)
    assert r.stdout.splitlines() == [
        *(line for d in places for line in
          (f"reply hi-{d}", f"served {d}", f"fifo {d} through/fifo")),
        *(f"{d} ext4" for d in places),
    ], r.stdout + kh.all_diagnostics(rkt.dir)
    cmdline = _restored_cmdline(rkt, uuid_file.read_text().strip())
    assert _slots(cmdline) == [f"rkt-d{i}" for i in range(shape.SLOTS)], cmdline
    assert f"rkt-d{shape.SLOTS}" not in cmdline  # hot-plugged over QMP


def test_a_disk_bigger_than_a_slot_is_hot_plugged(rkt: Rkt, tmp_path: Path) -> None:
    """An image whose filesystem image is bigger than a slot's capacity (the guest read
    the slot's size at the template's boot and keeps it): its disk is hot-plugged after
    the restore instead, the slots stay empty, and the pod reads and writes its disk."""
    from pyrkt.stage1.kvm.vm import DISK_SLOT_BYTES

    work = tmp_path / "img"
    kh.busybox_rootfs(work / "rootfs")
    (work / "rootfs" / "marker").write_text("from the big disk\n")
    aci = kh.pack_aci(work, "big.aci")
    r = rkt.run(BLOCK, str(aci), "--exec", "/bin/true")
    assert r.returncode == 0, r.stderr + kh.all_diagnostics(rkt.dir)
    (fs,) = (p for p in (rkt.dir / "cas" / "trees").glob(f"*/{fsimage.NAME}")
             if (p.parent / "rootfs" / "marker").exists())
    fs.chmod(0o644)
    os.truncate(fs, DISK_SLOT_BYTES + (1 << 20))  # sparse: its ext4 stays as it was
    uuid_file = tmp_path / "uuid"
    r = rkt.run(BLOCK, "--kvm-template=on", f"--uuid-file-save={uuid_file}", str(aci),
                "--exec", "/bin/sh", "--", "-c",
                "cat /marker; echo new > /new; cat /new; "
                "awk '$2 == \"/\" {print \"root on\", $3}' /proc/mounts")
    assert r.returncode == 0, r.stderr + kh.all_diagnostics(rkt.dir)
    assert r.stdout.splitlines() == ["from the big disk", "new", "root on ext4"], r.stdout
    cmdline = _restored_cmdline(rkt, uuid_file.read_text().strip())
    assert f'"filename":"{fs}"' not in cmdline, cmdline  # not on QEMU's command line
    assert f"--ro {fs} " in cmdline, cmdline  # but in its jail, for the hot-plug
    from pyrkt.stage1.kvm.templates import shape

    assert _slots(cmdline) == [f"rkt-slot{i}" for i in range(shape.SLOTS)], cmdline


def test_a_bad_rootfs_kind_is_refused(rkt: Rkt, image: Path) -> None:
    r = rkt.run("--kvm-rootfs=disk", str(image))
    assert r.returncode == 254
    assert "--kvm-rootfs='disk': not a rootfs kind" in r.stderr


def test_a_disk_the_guest_cannot_mount_fails_the_pod(rkt: Rkt, image: Path,
                                                     tmp_path: Path) -> None:
    """The image's filesystem image broken in the store: the guest cannot mount the app's
    disk, says so, and `rkt run` fails (254) with its word instead of a clean exit 0."""
    r = rkt.run(BLOCK, str(image), "--exec", "/bin/true")
    assert r.returncode == 0, r.stderr
    (fs,) = (rkt.dir / "cas" / "trees").glob(f"*/{fsimage.NAME}")
    size = fs.stat().st_size
    fs.chmod(0o644)
    with open(fs, "r+b") as f:  # the superblock (at 1024) gone
        f.write(b"\0" * 65536)
        f.truncate(size)
    uuid_file = tmp_path / "uuid"
    r = rkt.run(BLOCK, f"--uuid-file-save={uuid_file}", str(image), "--exec", "/bin/true")
    assert r.returncode == 254, r.stderr + kh.all_diagnostics(rkt.dir)
    said = "the pod could not start: cannot mount the disk of app busybox (the guest said)"
    assert said in r.stderr, r.stderr
    st = rkt("status", uuid_file.read_text().strip())
    assert f"failure={said}" in st.stdout.splitlines(), st.stdout


def test_a_disk_hot_plugged_after_boot_is_found_and_mounted(stage1: Path, accel_env: str,
                                                            tmp_path: Path) -> None:
    """What a pod restored from a VM template does: its VM booted without its disk,
    which is then attached over QMP (blockdev-add + device_add: ACPI PCI hot-plug on
    -M pc); the pod script waits for it by its serial number, mounts it, runs the app."""
    import socket
    import subprocess

    from pyrkt.record import replace
    from pyrkt.stage1.kvm import disks, runner
    from pyrkt.stage1.kvm.disks import PodDisks
    from pyrkt.stage1.kvm.hypervisors.qemu import Qemu
    from pyrkt.stage1.kvm.qmp import Qmp
    from pyrkt.stage1.kvm.vm import Disk

    with tarfile.open(stage1) as t:
        for n in ("rootfs/kvm/vmlinuz", "rootfs/kvm/initrd.img"):
            t.extract(n, tmp_path / "assets", filter="data")
    pod, plan = kh.make_pod(tmp_path, tmp_path / "assets" / "rootfs",
                            [kh.app("a", "/bin/sh", "-c", "cat /hello; exit 5")])
    tree = tmp_path / "tree"
    kh.busybox_rootfs(tree / "rootfs")
    (tree / "rootfs" / "hello").write_text("from the hot-plugged disk\n")
    disks.disks_dir(pod).mkdir(parents=True)
    layer = disks.layer_path(pod, "a")
    disks.make_layer(layer, fsimage.disk_image(tree))
    disk = Disk(disks.disk_id(0), fsimage.disk_image(tree), (layer,))
    opts = runner.RunOptions()
    runner.kvm_dir(pod).mkdir(exist_ok=True)
    runner.write_guest_files(pod, plan, opts, PodDisks({"a": disk}))
    vp, _ = runner.vm_plan(pod, plan, opts)  # no disk on the command line
    out = tmp_path / "out.txt"
    # QMP on a connected socket QEMU inherits (as a template restore has it).
    ours, theirs = socket.socketpair()
    vp = replace(vp, qmp_fd=theirs.fileno(), app_stdout=out, app_stderr=out, fd_sets=(),
                 app_log_dir=None)
    argv = Qemu().argv(vp)
    assert "-blockdev" not in argv
    p = subprocess.Popen(argv, cwd=pod, stdin=subprocess.DEVNULL, pass_fds=[theirs.fileno()])
    theirs.close()
    try:
        q = Qmp(ours, 300.0)
        q.handshake()
        disks.attach_qmp(q, [disk])
        assert p.wait(timeout=600) == 0, kh.diagnostics(pod)
    finally:
        ours.close()
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out.read_text() == "from the hot-plugged disk\n", kh.diagnostics(pod)
    assert (pod / "stage1/rootfs/rkt/status/a").read_text().strip() == "5"
