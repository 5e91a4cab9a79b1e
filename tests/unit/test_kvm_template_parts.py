"""VM templates without a VM: the template's and the restore's command lines (same
devices, other backends), the key, the switch, the go line, the QMP client against a
scripted peer, and the store (locks, validity, gc) with a stand-in for the build."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pyrkt.record import replace
from pyrkt.stage1.kvm import templates
from pyrkt.stage1.kvm.guest import script
from pyrkt.stage1.kvm.hypervisors.qemu import Qemu
from pyrkt.stage1.kvm.qmp import MAX_LINE, Qmp, QmpError
from pyrkt.stage1.kvm.templates import build, shape, store
from pyrkt.stage1.kvm.vm import DISK_SLOT_BYTES, Accel, ConsoleMode, Disk, Share, Tap, VmPlan

CMDLINE = ("console=ttyS0", "quiet", "rkt.template=1")


def pod_vm(**kw: object) -> VmPlan:
    """A pod's VM as the runner plans it (streams, logs, sockets, a balloon)."""
    base = VmPlan(
        kernel=Path("/pod/stage1/rootfs/kvm/vmlinuz"), initrd=Path("/pod/stage1/rootfs/kvm/i"),
        cmdline=("console=ttyS0", "quiet"), vcpus=2, memory_mib=256, accel=Accel.TCG,
        shares=(Share("rkt.stage1", Path("/pod/stage1/rootfs")),
                Share("rkt.ctl", Path("/pod/kvm/ctl"))),
        serial_log=Path("kvm/serial.log"), app_stdout=Path("/dev/fdset/1"),
        app_stderr=Path("/proc/self/fd/2"), app_log_dir=Path("logs"), fd_sets=((4, 1),),
        agent_socket=Path("kvm/agent.sock"), tty_socket=Path("kvm/tty.sock"),
        tcg_tb_mib=16, balloon=True,
    )
    return replace(base, **kw)


def layout(argv: list[str]) -> list[str]:
    """What QEMU's migration needs to be the same: machine, CPUs, memory, devices (not
    their backends, nor a NIC's MAC, which the guest is given after the restore)."""
    out = []
    for opt, val in itertools.pairwise(argv):
        if opt == "-accel":  # TCG's translation cache is no part of the state
            out.append(f"{opt} {','.join(p for p in val.split(',') if 'tb-size' not in p)}")
        elif opt in ("-M", "-smp", "-m", "-cpu"):
            out.append(f"{opt} {val}")
        elif opt == "-serial":
            out.append("-serial")
        elif opt == "-object":
            out.append(",".join(p for p in val.split(",")
                                if not p.startswith(("mem-path=", "share="))))
        elif opt == "-device" and val.startswith("{"):  # a disk: its backend and serial
            dev = json.loads(val)
            out.append(json.dumps({k: v for k, v in dev.items() if k not in ("drive", "serial")}))
        elif opt == "-device":
            out.append(",".join(p for p in val.split(",")
                                if not p.startswith(("netdev=", "mac="))))
    return out


def template_and_restore(vp: VmPlan, sizes: dict[str, int] | None = None,
                         ) -> tuple[list[str], list[str]]:
    tplan = shape.template_plan(vp, CMDLINE)
    restore = shape.restore_plan(vp, CMDLINE, Path("/dev/shm/x.ram"), Path("/t/kernel-head"),
                                 go_fd=7, qmp_fd=8, sizes=sizes or {})
    return Qemu().argv(tplan), Qemu().argv(restore)


@pytest.mark.parametrize("kw", [
    {},
    {"console": ConsoleMode.INTERACTIVE, "app_stdout": None, "app_stderr": None,
     "app_log_dir": None, "fd_sets": ()},
    {"console": ConsoleMode.TERMINAL, "app_stdout": None, "app_stderr": None,
     "app_log_dir": None, "fd_sets": ()},
    {"serial_to_stderr": True},
    {"taps": (Tap("tap0", "aa:bb:cc:dd:ee:01"), Tap("tap1", "aa:bb:cc:dd:ee:02")),
     "shares": (Share("rkt.stage1", Path("/p/s")), Share("rkt.ctl", Path("/p/c")),
                Share("rkt.v0", Path("/vol"), read_only=True))},
    {"accel": Accel.KVM, "vcpus": 1, "memory_mib": 512},
], ids=["streams", "interactive", "terminal", "debug", "nics-and-volumes", "kvm"])
def test_a_pod_restores_into_its_template_s_devices(kw: dict[str, object]) -> None:
    vp = pod_vm(**kw)
    tpl, restore = template_and_restore(vp)
    assert layout(tpl) == layout(restore)
    # The restore keeps the pod's backends; the template has its own.
    assert "-incoming" in restore and "-incoming" not in tpl
    # A restored TCG guest gets the bigger translation cache (shape.RESTORED_TCG_TB_MIB).
    if "-accel" in restore and "tcg" in restore[restore.index("-accel") + 1]:
        assert f"tb-size={shape.RESTORED_TCG_TB_MIB}" in restore[restore.index("-accel") + 1]
    # The restore loads only the head of the template's kernel, no initramfs.
    assert restore[restore.index("-kernel") + 1] == "/t/kernel-head"
    assert "-initrd" not in restore and "-initrd" in tpl
    assert any("share=off" in a for a in restore) and any("share=on" in a for a in tpl)
    assert not any("balloon" in a for a in tpl + restore)  # QEMU 7.2 would punch the file
    for s in vp.shares:
        assert any(f"path={s.path}" in a for a in restore)
        assert not any(f"path={s.path}," in a for a in tpl)
    for t in vp.taps:
        assert any(f"ifname={t.ifname}," in a for a in restore)
    pod_only = ("netdev", "fdset", "kvm/ctl", "kvm/serial", "kvm/agent", "logs/", "/proc/")
    assert not any(w in a for a in tpl for w in pod_only)


def test_every_console_mode_has_the_same_devices() -> None:
    streams = Qemu().argv(replace(pod_vm(), uniform_devices=True))
    interactive = Qemu().argv(pod_vm(console=ConsoleMode.INTERACTIVE, app_stdout=None,
                                     app_stderr=None, uniform_devices=True))
    assert layout(streams) == layout(interactive)
    assert streams.count("-serial") == 2
    assert layout(Qemu().argv(pod_vm())) != layout(streams)  # a boot keeps its one serial


def key_of(vp: VmPlan, kernel: str = "k1") -> str:
    tplan = shape.template_plan(vp, CMDLINE)
    return shape.key(Qemu().argv(shape.keyed_plan(tplan)), [["kernel", kernel]])


def test_the_key_follows_the_shape_and_nothing_else() -> None:
    base = key_of(pod_vm())
    same = [
        pod_vm(serial_to_stderr=True),
        pod_vm(console=ConsoleMode.INTERACTIVE, app_stdout=None, app_stderr=None),
        pod_vm(kernel=Path("/other/pod/vmlinuz"), initrd=Path("/other/pod/initrd"),
               shares=(Share("rkt.stage1", Path("/o/s")), Share("rkt.ctl", Path("/o/c")))),
        pod_vm(balloon=False, fd_sets=(), app_log_dir=None),
    ]
    assert {key_of(vp) for vp in same} == {base}
    other = [
        pod_vm(vcpus=1), pod_vm(memory_mib=512), pod_vm(accel=Accel.KVM),
        pod_vm(taps=(Tap("tap0", "aa:bb:cc:dd:ee:01"),)),
        pod_vm(shares=(Share("rkt.stage1", Path("/s")),)),
    ]
    keys = {key_of(vp) for vp in other}
    assert len(keys) == len(other) and base not in keys
    assert key_of(pod_vm(), kernel="k2") != base
    tplan = shape.template_plan(pod_vm(), CMDLINE)
    assert shape.key(Qemu().argv(shape.keyed_plan(replace(tplan, cmdline=("x",)))),
                     [["kernel", "k1"]]) != base


def test_the_kernel_head_is_a_bzimage_s_setup_and_a_little() -> None:
    kernel = bytearray(b"\x01" * 3_000_000)
    kernel[0x1F1] = 31  # setup sectors
    kernel[0x202:0x206] = b"HdrS"
    head = shape.kernel_head(bytes(kernel))
    assert head == bytes(kernel[:(32 + 8) * 512])
    assert shape.kernel_head(b"\x7fELF" + b"\0" * 5000) == b"\x7fELF" + b"\0" * 5000


def test_the_go_line() -> None:
    line = shape.go_line(1_700_000_000_123_456_789, b"\x01\xab",
                         [(shape.template_mac(0), "aa:bb:cc:dd:ee:01")])
    assert line == b"go 1700000000 123456789 01ab 02:72:6b:74:00:00=aa:bb:cc:dd:ee:01\n"
    # The pod's disks, which rkt-exec --restore mounts in the background and moves to
    # their targets, with their read-ahead.
    targets = [script.DiskTarget("rkt-d0", "/stage1/opt/stage2/db/rootfs", "app db", 2048),
               script.DiskTarget("rkt-d1", "/run/rkt-volumes/tmp", "volume tmp", 0)]
    line = shape.go_line(5_000_000_000, b"\xff", [], targets)
    assert line == (b"go 5 0 ff disk=rkt-d0:2048:/stage1/opt/stage2/db/rootfs"
                    b" disk=rkt-d1:0:/run/rkt-volumes/tmp\n")


def test_the_switch_flag_then_annotation_then_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ann = {templates.ANN_TEMPLATE: "off"}
    monkeypatch.setenv(templates.ENV_TEMPLATE, "on")
    assert templates.refused("qemu", {}, None) == ""
    assert "annotation" in templates.refused("qemu", ann, None)
    assert templates.refused("qemu", ann, True) == ""
    assert "--kvm-template" in templates.refused("qemu", {}, False)
    assert "QEMU only" in templates.refused("lkvm", {}, True)
    monkeypatch.setenv(templates.ENV_TEMPLATE, "off")
    assert templates.ENV_TEMPLATE in templates.refused("qemu", {}, None)
    assert templates.refused("qemu", {templates.ANN_TEMPLATE: "on"}, None) == ""
    monkeypatch.delenv(templates.ENV_TEMPLATE)
    assert (templates.refused("qemu", {}, None) == "") is templates.DEFAULT
    assert templates.parse_switch("bogus") is None


# ---- QMP -----------------------------------------------------------------------------


def qmp_peer(script: Callable[[socket.socket], None]) -> Iterator[socket.socket]:
    ours, theirs = socket.socketpair()
    t = threading.Thread(target=script, args=(theirs,), daemon=True)
    t.start()
    yield ours
    ours.close()
    t.join(5)
    theirs.close()


def lines(s: socket.socket) -> Iterator[dict[str, object]]:
    f = s.makefile("rb")
    for line in f:
        yield json.loads(line)


def send(s: socket.socket, msg: object) -> None:
    s.sendall(json.dumps(msg).encode() + b"\n")


GREETING = {"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}


def blockdevs(argv: list[str]) -> list[dict[str, object]]:
    return [json.loads(v) for o, v in itertools.pairwise(argv) if o == "-blockdev"]


def disk_devices(argv: list[str]) -> list[dict[str, object]]:
    return [json.loads(v) for o, v in itertools.pairwise(argv)
            if o == "-device" and v.startswith("{")]


def test_a_template_has_empty_disk_slots_and_a_pod_s_disks_restore_into_them() -> None:
    """A template has SLOTS virtio-blk devices behind empty placeholders (no file: zeros,
    writes dropped); the restored pod has the same devices, its own disk in the first
    one and placeholders in the others, no hot-plug; pods on 9p and on disks have one
    template (one key), whose layout both restore into."""
    disk = Disk("rkt-d0", Path("/store/tree/rootfs.2.ext4"), (Path("/pod/kvm/disks/a.qcow2"),))
    vp = pod_vm(disks=(disk,))
    tpl, restore = template_and_restore(vp, {"rkt-d0": 8 << 30})
    _, restore_9p = template_and_restore(pod_vm())
    assert layout(tpl) == layout(restore) == layout(restore_9p)
    assert key_of(vp) == key_of(pod_vm())
    empty = blockdevs(tpl)
    assert len(empty) == shape.SLOTS
    for n in empty:  # no file behind a slot of the template
        assert n["driver"] == "null-co" and n["read-zeroes"] is True
        assert n["size"] == DISK_SLOT_BYTES and n["read-only"] is False
        assert "filename" not in n
    ids = [d["id"] for d in disk_devices(tpl)]
    assert ids == [d["id"] for d in disk_devices(restore)] == [f"rkt-slot{i}" for i in
                                                                range(shape.SLOTS)]
    first, *others = disk_devices(restore)
    assert first["drive"] == first["serial"] == "rkt-d0"  # the guest finds it by serial
    assert [d["serial"] for d in others] == [f"rkt-slot{i}" for i in range(1, shape.SLOTS)]
    files = {n.get("filename") for n in blockdevs(restore)} - {None}
    assert files == {"/store/tree/rootfs.2.ext4", "/pod/kvm/disks/a.qcow2"}
    assert not any(n.get("filename") for n in blockdevs(restore_9p))
    rplan = shape.restore_plan(vp, CMDLINE, Path("/r"), Path("/k"), go_fd=7, qmp_fd=8,
                               sizes={"rkt-d0": 8 << 30})
    assert rplan.disks == () and rplan.all_disks() == (disk,)  # nothing to hot-plug
    assert shape.template_plan(vp, CMDLINE).all_disks() == ()
    assert "-blockdev" in Qemu().argv(vp) and "rkt-slot0" not in " ".join(Qemu().argv(vp))


def test_disks_that_do_not_fit_a_slot_are_hot_plugged() -> None:
    """More disks than slots, a disk bigger than a slot's capacity (the guest read the
    slot's size at the template's boot), or one of unknown size: hot-plugged."""
    ds = [Disk(f"rkt-d{i}", Path(f"/b{i}"), (Path(f"/l{i}"),)) for i in range(shape.SLOTS + 2)]
    sizes = {d.id: 1 << 30 for d in ds}
    sizes["rkt-d1"] = DISK_SLOT_BYTES + 1
    slots, rest = shape.slotted(ds, sizes)
    assert [d.id if d else None for d in slots] == ["rkt-d0", "rkt-d2", "rkt-d3", "rkt-d4"]
    assert [d.id for d in rest] == ["rkt-d1", "rkt-d5"]
    assert shape.slotted(ds[:1], {}) == ((None,) * shape.SLOTS, (ds[0],))
    assert shape.slotted(ds[:1], {"rkt-d0": DISK_SLOT_BYTES})[0][0] == ds[0]
    rplan = shape.restore_plan(pod_vm(disks=tuple(ds)), CMDLINE, Path("/r"), Path("/k"),
                               go_fd=7, qmp_fd=8, sizes=sizes)
    assert rplan.disks == tuple(rest) and rplan.disks_hotplugged
    argv = Qemu().argv(rplan)
    assert {d["serial"] for d in disk_devices(argv)} == {"rkt-d0", "rkt-d2", "rkt-d3", "rkt-d4"}
    assert set(rplan.all_disks()) == set(ds)  # QEMU's jail gives every disk's files


def test_hot_plugging_sends_each_node_base_first_then_the_device() -> None:
    from pyrkt.stage1.kvm import disks

    seen: list[tuple[str, dict[str, object]]] = []

    def qemu(s: socket.socket) -> None:
        send(s, GREETING)
        for m in lines(s):
            seen.append((m["execute"], m.get("arguments", {})))
            send(s, {"return": {}, "id": m["id"]})

    disk = Disk("rkt-d1", Path("/b.ext4"), (Path("/l.qcow2"),))
    for sock in qmp_peer(qemu):
        q = Qmp(sock, 5.0)
        q.handshake()
        disks.attach_qmp(q, [disk])
    assert [c for c, _ in seen] == ["qmp_capabilities", *["blockdev-add"] * 4, "device_add"]
    assert seen[-1][1] == {"driver": "virtio-blk-pci", "id": "rkt-d1-dev", "drive": "rkt-d1",
                           "serial": "rkt-d1"}
    assert [a["node-name"] for _, a in seen[1:5]] == [
        "rkt-d1-base-file", "rkt-d1-base", "rkt-d1-file", "rkt-d1"]
    assert [a["read-only"] for _, a in seen[1:5]] == [True, True, False, False]


def test_disks_qemu_refuses_are_the_pod_s_matter_not_the_template_s() -> None:
    """A blockdev-add QEMU refuses (a layer it cannot open) is DisksRefused, which
    restore.py does not count against the template (it stays usable)."""
    from pyrkt.stage1.kvm.templates import restore

    def qemu(s: socket.socket) -> None:
        send(s, GREETING)
        for m in lines(s):
            if m["execute"] == "blockdev-add":
                send(s, {"error": {"class": "GenericError", "desc": "Could not open"},
                         "id": m["id"]})
            else:
                send(s, {"return": {}, "id": m["id"]})

    vp = pod_vm(disks=(Disk("rkt-d0", Path("/b.ext4"), (Path("/gone.qcow2"),)),))
    for sock in qmp_peer(qemu):
        q = Qmp(sock, 5.0)
        q.handshake()
        with pytest.raises(restore.DisksRefused, match="Could not open"):
            restore._attach(q, vp)


def test_qmp_commands_events_errors_and_fds() -> None:
    got_fd: list[bytes] = []

    def qemu(s: socket.socket) -> None:
        send(s, GREETING)
        msgs = lines(s)
        m = next(msgs)
        assert m["execute"] == "qmp_capabilities"
        send(s, {"return": {}, "id": m["id"]})
        m = next(msgs)
        send(s, {"event": "RESUME", "data": {}})
        send(s, {"return": {"status": "completed"}, "id": m["id"]})
        data, fds, _, _ = socket.recv_fds(s, 4096, 1)
        with os.fdopen(fds[0], "rb") as f:
            got_fd.append(f.read())
        send(s, {"return": {}, "id": json.loads(data)["id"]})
        m = next(msgs)
        send(s, {"error": {"class": "GenericError", "desc": "no such thing"}, "id": m["id"]})

    for sock in qmp_peer(qemu):
        q = Qmp(sock, 5.0)
        assert q.handshake() == GREETING
        assert q.execute("query-migrate") == {"status": "completed"}
        assert q.events == ["RESUME"]
        r, w = os.pipe()
        os.write(w, b"state")
        os.close(w)
        q.execute("getfd", {"fdname": "state"}, fds=[r])
        os.close(r)
        with pytest.raises(QmpError, match="GenericError: no such thing"):
            q.execute("bogus")
    assert got_fd == [b"state"]


def restore_peer(seen: list[dict[str, object]], events: list[dict[str, object]],
                 ) -> Callable[[socket.socket], None]:
    """A restoring QEMU: it reads the three restore commands before it greets (they were
    sent at once, before the greeting), answers them, sends `events` as its state
    loads, then answers whatever comes next (`cont`)."""
    def qemu(s: socket.socket) -> None:
        msgs = lines(s)
        first = [next(msgs) for _ in range(3)]
        seen.extend(first)
        send(s, GREETING)
        for m in first:
            send(s, {"return": {}, "id": m["id"]})
        for ev in events:
            send(s, ev)
        for m in msgs:
            seen.append(m)
            send(s, {"return": {}, "id": m["id"]})
    return qemu


def migration(status: str) -> dict[str, object]:
    return {"event": "MIGRATION", "data": {"status": status}}


@pytest.mark.parametrize("saved_running", [True, False], ids=["saved-running", "saved-stopped"])
def test_a_restore_sends_its_commands_at_once_and_waits_for_the_state_loaded(
        saved_running: bool) -> None:
    """The restore's QMP commands go out before QEMU's greeting is read (one round trip
    for all, answered once QEMU's main loop runs); the MIGRATION event, not polling,
    says the state is loaded, whether the template was saved stopped (build.py) or
    running (QEMU resumes it by itself)."""
    from pyrkt.stage1.kvm.templates import restore

    seen: list[dict[str, object]] = []
    events = [migration("setup"), migration("active")]
    events += [{"event": "RESUME", "data": {}}] if saved_running else []
    events += [migration("completed")]
    for sock in qmp_peer(restore_peer(seen, events)):
        q = Qmp(sock, 5.0)
        sent = restore._send_restore(q, 17)
        assert q.greeting() == GREETING
        for i in sent:
            assert q.reply(i) == {}
        build.wait_migration(q, 5.0)
        assert ("RESUME" in q.events) is saved_running
        q.execute("query-status")  # the peer has seen all that came before
    assert [m["execute"] for m in seen] == [
        "qmp_capabilities", "migrate-set-capabilities", "migrate-incoming", "query-status"]
    caps = seen[1]["arguments"]["capabilities"]  # type: ignore[index]
    assert {c["capability"] for c in caps if c["state"]} == {"x-ignore-shared", "events"}
    assert seen[2]["arguments"] == {"uri": "fd:17"}


def test_a_restore_whose_state_fails_to_load_is_an_error() -> None:
    from pyrkt.stage1.kvm.templates import restore

    for sock in qmp_peer(restore_peer([], [migration("active"), migration("failed")])):
        q = Qmp(sock, 5.0)
        sent = restore._send_restore(q, 17)
        q.greeting()
        for i in sent:
            q.reply(i)
        with pytest.raises(QmpError, match="failed"):
            build.wait_migration(q, 5.0)


def test_qmp_replies_are_read_in_the_order_sent_and_events_waited_for() -> None:
    def qemu(s: socket.socket) -> None:
        send(s, GREETING)
        msgs = lines(s)
        a, b = next(msgs), next(msgs)
        send(s, {"event": "STOP", "data": {}})
        send(s, {"return": "a", "id": a["id"]})
        send(s, {"event": "MIGRATION", "data": {"status": "completed"}})
        send(s, {"return": "b", "id": b["id"]})
        time.sleep(1.0)  # then nothing: a wait for another event gives up

    for sock in qmp_peer(qemu):
        q = Qmp(sock, 5.0)
        q.greeting()
        a, b = q.send("a"), q.send("b")
        with pytest.raises(QmpError, match="before it were not read"):
            q.reply(b)
        assert q.reply(a) == "a"
        assert q.reply(b) == "b"
        assert q.events == ["STOP", "MIGRATION"]
        assert q.wait_event("MIGRATION", 5.0) == {"status": "completed"}  # came already
        with pytest.raises(QmpError, match="no RESUME event from QEMU within"):
            q.wait_event("RESUME", 0.2)


@pytest.mark.parametrize("reply, match", [
    (b"", "closed the connection"),
    (b"not json\n", "not JSON"),
    (b"x" * (MAX_LINE + 10), "longer than"),
    (b'{"return": {}, "id": 99}\n', "unexpected reply"),
], ids=["closed", "garbage", "too-long", "wrong-id"])
def test_qmp_refuses_what_is_not_qmp(reply: bytes, match: str) -> None:
    def qemu(s: socket.socket) -> None:
        send(s, GREETING)
        next(lines(s))
        with contextlib.suppress(OSError):
            s.sendall(reply)
            if not reply:
                s.shutdown(socket.SHUT_WR)

    for sock in qmp_peer(qemu):
        with pytest.raises(QmpError, match=match):
            Qmp(sock, 5.0).handshake()


def test_qmp_gives_up_after_its_timeout() -> None:
    def qemu(s: socket.socket) -> None:
        time.sleep(1.0)

    for sock in qmp_peer(qemu):
        t0 = time.monotonic()
        with pytest.raises(QmpError, match="no answer"):
            Qmp(sock, 0.2).handshake()
        assert time.monotonic() - t0 < 1.0


# ---- the store -----------------------------------------------------------------------


@pytest.fixture
def ram_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "shm"
    monkeypatch.setattr(store, "RAM_ROOT", root)
    return root


def fake_make(calls: list[str], delay: float = 0.0) -> Callable[[Path], None]:
    """What build.make leaves: a folder with a state file, a RAM file, meta.json."""
    def make(final: Path) -> None:
        calls.append(final.name)
        time.sleep(delay)
        build = final.with_name(f"{store.BUILD_PREFIX}{final.name}-x")
        build.mkdir()
        ram = store.ram_dir(final.parent) / f"{final.name}-x.ram"
        ram.with_suffix(".owner").write_text(f"{build}\n{final}\n")
        ram.write_bytes(b"\0" * 4096)
        (build / store.STATE).write_bytes(b"state")
        (build / shape.KERNEL_HEAD).write_bytes(b"kernel")
        store.write_meta(build, final.name, ram, "vm", [])
        os.rename(build, final)
    return make


def use_once(where: Path, key: str, make: Callable[[Path], None]) -> store.Template:
    with store.use(where, key, make) as t:
        return t


def test_made_once_then_used(tmp_path: Path, ram_root: Path) -> None:
    calls: list[str] = []
    where = tmp_path / "store"
    t = use_once(where, "k1", fake_make(calls))
    assert use_once(where, "k1", fake_make(calls)) == t
    assert calls == ["k1"]
    assert t.ram.parent == ram_root and (ram_root.stat().st_mode & 0o777) == 0o700


def test_concurrent_users_make_it_once(tmp_path: Path, ram_root: Path) -> None:
    calls: list[str] = []
    where = tmp_path / "store"
    got: list[store.Template] = []
    threads = [threading.Thread(target=lambda: got.append(
        use_once(where, "k1", fake_make(calls, delay=0.3)))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert calls == ["k1"] and len(got) == 4 and len(set(got)) == 1


@pytest.mark.parametrize("damage", ["state", "ram", "ram-gone", "meta"])
def test_a_changed_template_is_refused_and_removed(tmp_path: Path, ram_root: Path,
                                                   damage: str) -> None:
    calls: list[str] = []
    where = tmp_path / "store"
    t = use_once(where, "k1", fake_make(calls))
    if damage == "state":
        with t.state.open("r+b") as f:
            f.write(b"X")
    elif damage == "ram":
        os.truncate(t.ram, 8192)
    elif damage == "ram-gone":
        t.ram.unlink()
    else:
        (t.folder / store.META).write_text("{}")
    with pytest.raises(store.Unavailable, match="template k1 is broken"):
        use_once(where, "k1", fake_make(calls))
    assert not t.folder.exists() and not t.ram.exists()
    assert calls == ["k1"]  # that pod boots; the next one makes a new template
    use_once(where, "k1", fake_make(calls))
    assert calls == ["k1", "k1"]


def test_a_failure_is_remembered_until_gc(tmp_path: Path, ram_root: Path) -> None:
    where = tmp_path / "store"
    calls: list[str] = []

    def broken(final: Path) -> None:
        calls.append(final.name)
        raise store.Unavailable("cannot make template k1: QEMU said no")

    for _ in range(2):
        with pytest.raises(store.Unavailable, match="QEMU said no"):
            use_once(where, "k1", broken)
    assert calls == ["k1"]
    store.gc(where, grace=3600)
    use_once(where, "k1", fake_make(calls))
    assert calls == ["k1", "k1"]


def test_gc_keeps_what_is_used_and_removes_the_rest(tmp_path: Path, ram_root: Path) -> None:
    where = tmp_path / "store"
    calls: list[str] = []
    fresh = use_once(where, "fresh", fake_make(calls))
    idle = use_once(where, "idle", fake_make(calls))
    old = time.time() - 7200
    os.utime(idle.folder / store.META, (old, old))
    held = use_once(where, "held", fake_make(calls))
    os.utime(held.folder / store.META, (old, old))
    # An orphan RAM file (its data dir removed), a build left by a killed `rkt run`.
    orphan = ram_root / "gone-x.ram"
    orphan.write_bytes(b"\0")
    orphan.with_suffix(".owner").write_text(f"{tmp_path}/nowhere/.build-gone-x\n"
                                            f"{tmp_path}/nowhere/gone\n")
    left = where / f"{store.BUILD_PREFIX}dead-y"
    left.mkdir()
    with store.use(where, "held", fake_make(calls)):
        os.utime(held.folder / store.META, (old, old))
        removed = store.gc(where, grace=1800)
    assert removed == ["idle"]
    assert fresh.folder.exists() and fresh.ram.exists() and held.folder.exists()
    assert not idle.folder.exists() and not idle.ram.exists()
    assert not orphan.exists() and not left.exists()
    assert not (where / "idle.lock").exists()
    assert sorted(store.gc(where, grace=0)) == ["fresh", "held"]
    assert sorted(p.name for p in ram_root.iterdir()) == []


def test_the_ram_folder_must_be_ours(tmp_path: Path, ram_root: Path) -> None:
    ram_root.mkdir(mode=0o777)
    os.chmod(ram_root, 0o777)  # as a local user could have made it in /dev/shm
    where = tmp_path / "store"
    t = use_once(where, "k1", fake_make([]))
    assert t.ram.parent == where
    # gc removes nothing there either (what it holds is not ours to judge).
    planted = ram_root / "x.ram"
    planted.write_bytes(b"\0")
    planted.with_suffix(".owner").write_text(f"{tmp_path}/gone\n")
    store.gc(where, grace=0)
    assert planted.exists() and not t.ram.exists()


def test_the_guest_files_digests_are_remembered_only_while_the_files_are_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The template key's kernel and initramfs digests (digests.py) come from the cache
    while the file is the very one hashed: rewritten in place with the same size and
    mtime (only its ctime differs), it is hashed again."""
    import hashlib

    from pyrkt.linux import files
    from pyrkt.stage1.kvm import digests

    kernel, cache = tmp_path / "vmlinuz", tmp_path / "cache"
    kernel.write_bytes(b"A" * 4096)
    monkeypatch.setattr(files, "SETTLE_NS", -1)  # as if written long ago
    assert digests.sha256(kernel, cache) == hashlib.sha256(b"A" * 4096).hexdigest()
    recorded = json.loads((cache / digests.CACHE_FILE).read_text())
    assert recorded[str(kernel)][-1] == hashlib.sha256(b"A" * 4096).hexdigest()
    st = kernel.stat()
    kernel.write_bytes(b"B" * 4096)
    os.utime(kernel, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert digests.sha256(kernel, cache) == hashlib.sha256(b"B" * 4096).hexdigest()
    assert digests.sha256(kernel, None) == hashlib.sha256(b"B" * 4096).hexdigest()
