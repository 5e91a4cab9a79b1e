"""The kvm flavor's pure parts: VM sizing, the QEMU command line, the pod script, the
initramfs archive, kernel release parsing and the accelerator choice when forced/cached."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pyrkt.errors import RktError
from pyrkt.record import replace
from pyrkt.stage1.kvm import accel, assets
from pyrkt.stage1.kvm.guest import initramfs, script
from pyrkt.stage1.kvm.hypervisors import get
from pyrkt.stage1.kvm.hypervisors.qemu import Qemu
from pyrkt.stage1.kvm.sizing import vm_size
from pyrkt.stage1.kvm.vm import Accel, ConsoleMode, Machine, Share, Tap, VmPlan
from pyrkt.stage1.plan import AppPlan, MountPlan, PodPlan, VolumeKind

MIB = 1024 * 1024


def app(name: str = "a", **kw: object) -> AppPlan:
    base = AppPlan(name=name, rootfs=Path("/x"), argv=("/bin/true",), env=(("PATH", "/bin"),))
    return replace(base, **kw)  # type: ignore[arg-type]


# ---- sizing --------------------------------------------------------------------------


def test_size_no_limits_takes_all_cpus_and_128_per_app() -> None:
    s = vm_size([app("a"), app("b")], host_cpus=8)
    assert (s.memory_mib, s.vcpus) == (128 + 128 + 128, 8)


def test_size_all_limited_sums_and_rounds_up() -> None:
    apps = [app("a", memory_limit=64 * MIB, cpu_limit_milli=500),
            app("b", memory_limit=100 * MIB + 1, cpu_limit_milli=1200)]
    s = vm_size(apps, host_cpus=8)
    assert s.memory_mib == 128 + 64 + 101
    assert s.vcpus == 2  # 1.7 CPUs rounded up


def test_size_one_unlimited_cpu_means_all_cpus() -> None:
    apps = [app("a", memory_limit=256 * MIB, cpu_limit_milli=1000), app("b")]
    s = vm_size(apps, host_cpus=6)
    assert (s.memory_mib, s.vcpus) == (128 + 256 + 128, 6)


def test_size_never_more_cpus_than_the_host_and_at_least_one() -> None:
    assert vm_size([app(cpu_limit_milli=64000)], host_cpus=4).vcpus == 4
    assert vm_size([app(cpu_limit_milli=1)], host_cpus=4).vcpus == 1
    assert vm_size([app()], host_cpus=0).vcpus == 1


# ---- QEMU argv -----------------------------------------------------------------------


def plan(**kw: object) -> VmPlan:
    base = VmPlan(kernel=Path("/k"), initrd=Path("/i"), cmdline=("console=ttyS0", "quiet"),
                  vcpus=3, memory_mib=384, accel=Accel.TCG)
    return replace(base, **kw)  # type: ignore[arg-type]


def opt_after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_qemu_argv_basics() -> None:
    argv = Qemu().argv(plan())
    assert argv[0] == "qemu-system-x86_64"
    assert opt_after(argv, "-smp") == ["3"]
    assert opt_after(argv, "-m") == ["384"]
    assert opt_after(argv, "-accel") == ["tcg"]
    assert opt_after(argv, "-M") == ["pc"]
    assert opt_after(argv, "-append") == ["console=ttyS0 quiet"]
    assert "-no-reboot" in argv and "-nodefaults" in argv
    assert "-cpu" not in argv  # TCG: QEMU's default model
    assert "host" in opt_after(Qemu().argv(plan(accel=Accel.KVM)), "-cpu")


def test_qemu_argv_shares_read_only_and_taps() -> None:
    argv = Qemu().argv(plan(
        shares=(Share("rkt.stage1", Path("/pod/s1")), Share("rkt.v0", Path("/data"), True)),
        taps=(Tap("tap0", "02:00:00:00:00:01"),),
    ))
    fsdevs = opt_after(argv, "-fsdev")
    assert "path=/pod/s1" in fsdevs[0] and "readonly=on" not in fsdevs[0]
    assert "path=/data" in fsdevs[1] and "readonly=on" in fsdevs[1]
    devices = opt_after(argv, "-device")
    assert "virtio-9p-pci,fsdev=fs1,mount_tag=rkt.v0" in devices
    assert "virtio-net-pci,netdev=net0,romfile=,mac=02:00:00:00:00:01" in devices
    assert any(n.startswith("tap,id=net0,ifname=tap0,") for n in opt_after(argv, "-netdev"))


def test_qemu_argv_console_modes() -> None:
    streams = Qemu().argv(plan(app_stdout=Path("/dev/fdset/1"), fd_sets=((9, 1),),
                               agent_socket=Path("kvm/agent.sock"),
                               serial_log=Path("kvm/serial.log")))
    chardevs = opt_after(streams, "-chardev")
    assert "file,id=con,path=kvm/serial.log,append=on" in chardevs
    assert "file,id=out,path=/dev/fdset/1,append=on" in chardevs
    assert any(c.startswith("socket,id=agent,path=kvm/agent.sock,server=on") for c in chardevs)
    assert opt_after(streams, "-add-fd") == ["fd=9,set=1"]
    debug = Qemu().argv(plan(serial_to_stderr=True, serial_log=Path("s.log")))
    assert "file,id=con,path=/proc/self/fd/2,append=on,logfile=s.log,logappend=on" in opt_after(
        debug, "-chardev")
    inter = Qemu().argv(plan(console=ConsoleMode.INTERACTIVE))
    assert "stdio,id=con,mux=on,signal=off" in opt_after(inter, "-chardev")
    assert opt_after(inter, "-serial") == ["chardev:log", "chardev:con"]


def test_qemu_microvm_machine_and_unknown_hypervisor() -> None:
    argv = Qemu().argv(plan(machine=Machine.MICROVM))
    assert opt_after(argv, "-M")[0].startswith("microvm")
    assert get("qemu").name == "qemu"
    with pytest.raises(RktError):
        get("firecracker")


# ---- pod script ----------------------------------------------------------------------


def pod(*apps: AppPlan, interactive: bool = False) -> PodPlan:
    return PodPlan(uuid="u-1", hostname="rkt-u-1", apps=apps, net="none",
                   interactive=interactive)


def test_script_runs_each_app_with_its_identity_and_records_status() -> None:
    a = app("web", argv=("/bin/sh", "-c", "echo 'hi there'; exit 3"),
            env=(("PATH", "/bin"), ("X", "a b")), uid=1000, gid=100,
            supplementary_gids=(5, 6), working_dir="/srv",
            capabilities=("CAP_NET_BIND_SERVICE", "CAP_CHOWN"),
            memory_limit=64 * MIB, cpu_limit_milli=500)
    text = script.pod_script(pod(a))
    assert "echo rkt-u-1 > /proc/sys/kernel/hostname" in text
    line = next(x for x in text.splitlines() if "/bin/rkt-exec" in x)
    assert "'X=a b'" in line
    assert ("/bin/rkt-exec --ns /run/rkt/web --mounts /ctl/mounts/web "
            "/stage1/opt/stage2/web/rootfs /srv 1000 100 5,6 0,10 1") in line
    assert line.endswith("/bin/sh -c 'echo '\"'\"'hi there'\"'\"'; exit 3' </dev/null >&4 2>&5 "
                         "4>&- 5>&- & rkt_track /run/rkt/web.pid $!; }")
    assert f"echo {64 * MIB} > /sys/fs/cgroup/rkt/web/memory.max" in text
    assert "echo 50000 100000 > /sys/fs/cgroup/rkt/web/cpu.max" in text
    assert "rkt_wait_watcher $rkt_w_0 /stage1/rkt/status/web" in text


def test_volumes_get_their_own_tags_and_read_only() -> None:
    ro = MountPlan("data", VolumeKind.HOST, Path("/srv/data"), "/data", read_only=True)
    rw = MountPlan("cache", VolumeKind.EMPTY, Path("/pod/v/cache"), "/my cache")
    p = pod(app("a", mounts=(ro, rw)), app("b", mounts=(ro,)))
    tags = script.mount_tags(p)
    # each app its own tag, even for the same mount (a 9p device mounts once at a time)
    assert tags == {("a", ro): "rkt.v0", ("a", rw): "rkt.v1", ("b", ro): "rkt.v2"}
    b = script.app_mounts(p.apps[1], script.app_tags(tags, p.apps[1])).splitlines()
    assert "mount rkt.v2 /data 9p trans=virtio,version=9p2000.L,access=any,ro,mkdir" in b
    a = script.app_mounts(p.apps[0], script.app_tags(tags, p.apps[0])).splitlines()
    assert ("mount rkt.v1 /my\\040cache 9p trans=virtio,version=9p2000.L,cache=mmap,"
            "access=any,mkdir") in a  # fstab's escape for the space
    assert "rkt.v" not in script.pod_script(p)  # mounted by rkt-exec, not the init


def test_a_single_file_volume_is_shared_as_a_folder_holding_the_file(tmp_path: Path) -> None:
    from pyrkt.stage1.kvm import runner

    hosts = tmp_path / "hosts"
    hosts.write_text("mine\n")
    m = MountPlan("h", VolumeKind.HOST, hosts, "/etc/hosts", read_only=True)
    d = MountPlan("d", VolumeKind.HOST, tmp_path, "/data")
    p = pod(app("a", mounts=(m, d)), app("b", mounts=(m,)))
    tags = script.mount_tags(p)
    pod_dir = tmp_path / "pod"
    assert runner._link_file_volumes(pod_dir, tags) == {m}
    for tag in ("rkt.v0", "rkt.v2"):  # each app's own share of it: the file itself
        linked = runner.file_share_dir(pod_dir, tag) / script.FILE_SHARE_NAME
        assert linked.samefile(hosts) and linked.read_text() == "mine\n"
    assert not runner.file_share_dir(pod_dir, "rkt.v1").exists()  # a folder: itself
    steps = script.app_mounts(p.apps[0], script.app_tags(tags, p.apps[0]), single_files={m})
    assert ("mount rkt.v0 /etc/hosts 9p trans=virtio,version=9p2000.L,access=any,ro,"
            "file=file") in steps.splitlines()
    shm = Path("/dev/shm")
    if shm.is_dir() and shm.stat().st_dev != tmp_path.stat().st_dev:
        elsewhere = shm / f"pyrkt-test-{tmp_path.name}"
        try:
            with pytest.raises(RktError, match="cannot share the file"):  # no link across
                runner._link_file_volumes(elsewhere, tags)
        finally:
            shutil.rmtree(elsewhere, ignore_errors=True)


def test_script_interactive_gives_the_app_the_serial_terminal() -> None:
    text = script.pod_script(pod(app("sh", argv=("/bin/sh",)), interactive=True))
    assert "setsid -c env -i" in text and "</dev/ttyS1 >/dev/ttyS1 2>&1 &" in text
    assert "/dev/rkt.out" not in text
    steps = script.app_mounts(app("sh"), {}, console="/dev/ttyS1").splitlines()
    assert "mount /dev/ttyS1 /dev/console none bind,mkfile" in steps
    assert "mount /dev/ttyS1 /dev/ttyS1 none bind,mkfile" in steps


def test_cap_arg() -> None:
    assert script.cap_arg(()) == "-"  # no capability at all
    assert script.cap_arg(script.ALL_CAPS) == "all"
    assert script.cap_arg(("CAP_SYS_ADMIN", "kill")) == "5,21"


# ---- initramfs, kernel ---------------------------------------------------------------


def test_newc_archive_lists_with_cpio(tmp_path: Path) -> None:
    if not shutil.which("cpio"):
        pytest.skip("needs cpio")
    data = initramfs._newc([
        initramfs._Entry("bin", 0o40755),
        initramfs._Entry("bin/hello", 0o100755, b"#!/bin/sh\necho hi\n"),
        initramfs._Entry("bin/sh", 0o120777, b"busybox"),
        initramfs._Entry("dev/console", 0o20600, rdev=(5, 1)),
    ])
    out = subprocess.run(["cpio", "-t", "-v"], input=data, capture_output=True, check=True)
    listing = out.stdout.decode()
    assert "bin/hello" in listing and "bin/sh -> busybox" in listing
    assert "5,   1" in listing or "5, 1" in listing


def test_initramfs_has_init_busybox_and_modules(tmp_path: Path) -> None:
    kernel = assets.default_kernel()
    kver = assets.kernel_release(kernel)
    assert (Path("/lib/modules") / kver).is_dir()
    img = initramfs.cached(tmp_path, kver=kver)
    assert initramfs.cached(tmp_path, kver=kver) == img  # built once
    names = subprocess.run(["cpio", "-t"], input=gzip.decompress(img.read_bytes()),
                           capture_output=True, check=True).stdout.decode().split()
    for n in ("init", "init.sh", "bin/busybox", "bin/rkt-exec", "bin/sh", "dev/console", "ctl",
              "etc/rkt-mounts", "run/rkt"):
        assert n in names
    assert "lib/modules/9pnet_virtio.ko" in names


def test_kernel_release_rejects_non_kernels(tmp_path: Path) -> None:
    f = tmp_path / "k"
    f.write_bytes(b"\0" * 0x4000)
    with pytest.raises(RktError, match="not a bzImage"):
        assets.kernel_release(f)


# ---- accelerator ---------------------------------------------------------------------


def test_accel_forced_by_env_and_cached_per_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel-1")
    monkeypatch.setenv(accel.ENV_FORCE, "kvm")
    assert accel.decide(kernel, kernel, tmp_path).accel is Accel.KVM
    monkeypatch.setenv(accel.ENV_FORCE, "bogus")
    with pytest.raises(RktError, match="invalid accelerator"):
        accel.decide(kernel, kernel, tmp_path)
    monkeypatch.delenv(accel.ENV_FORCE)
    cache = tmp_path / accel.CACHE_FILE
    cache.write_text(json.dumps({accel.cache_key(kernel): {"accel": "tcg", "reason": "r"}}))
    d = accel.decide(kernel, kernel, tmp_path)
    assert d.accel is Accel.TCG and "cached" in d.reason
    kernel.write_bytes(b"kernel-2")  # another kernel: not that cache entry
    assert accel.cache_key(kernel) not in json.loads(cache.read_text())


def test_stage1_hypervisor_from_the_image_annotation(tmp_path: Path) -> None:
    from pyrkt.stage1 import contract
    from pyrkt.stage1.kvm.runner import stage1_hypervisor

    assert stage1_hypervisor(tmp_path) == "qemu"  # no manifest: the default
    m = contract.stage1_manifest(tmp_path)
    m.parent.mkdir(parents=True)
    ann = [{"name": contract.ANN_FLAVOR, "value": "kvm"}]
    m.write_text(json.dumps({"annotations": ann}))
    assert stage1_hypervisor(tmp_path) == "qemu"
    ann.append({"name": contract.ANN_HYPERVISOR, "value": "lkvm"})
    m.write_text(json.dumps({"annotations": ann}))
    assert stage1_hypervisor(tmp_path) == "lkvm"


def test_qemu_tcg_translation_cache_size() -> None:
    assert opt_after(Qemu().argv(plan(tcg_tb_mib=16)), "-accel") == ["tcg,tb-size=16"]
    assert opt_after(Qemu().argv(plan(accel=Accel.KVM, tcg_tb_mib=16)), "-accel") == ["kvm"]


def test_the_pods_etc_files_are_bound_where_the_app_has_an_etc() -> None:
    steps = script.app_mounts(app("web"), {}, ["hostname", "hosts"]).splitlines()
    assert "mount /ctl/etc/hostname /etc/hostname none bind,mkfile" in steps
    assert "mount /ctl/etc/hosts /etc/hosts none bind,mkfile" in steps


def test_qemu_balloon_reports_free_pages() -> None:
    argv = Qemu().argv(plan(balloon=True))
    assert "virtio-balloon-pci,free-page-reporting=on" in opt_after(argv, "-device")
    assert not any("balloon" in a for a in Qemu().argv(plan()))


def test_each_app_runs_in_its_own_namespace_made_from_its_mount_plan() -> None:
    a = app("web")
    text = script.pod_script(pod(a))
    start = next(x for x in text.splitlines() if "/bin/rkt-exec" in x)
    assert " --ns /run/rkt/web --mounts /ctl/mounts/web " in start
    # the namespace file exists (empty) before rkt-exec starts, with no fork for it
    assert text.index(": > /run/rkt/web") < text.index(start)
    assert "mount --bind" not in text and "mount -a" not in text
    # `rkt enter` joins the app's namespace rather than making one
    enter = script.exec_line(a, argv=())
    assert " --ns /run/rkt/web " in enter and "--mounts" not in enter


def test_app_mounts_sys_ro_a_minimal_dev_and_proc_last() -> None:
    m = MountPlan("data", VolumeKind.HOST, Path("/srv"), "/data")
    steps = script.app_mounts(app("web", mounts=(m,)), {m: "rkt.v0"}, ["hosts"]).splitlines()
    assert steps[1:4] == [
        "mount sysfs /sys sysfs ro,nosuid,nodev,noexec,mkdir",
        "mount tmpfs /sys/firmware tmpfs ro,nosuid,nodev,noexec,mode=000",  # as rkt
        "mount tmpfs /dev tmpfs nosuid,nodev,strictatime,mode=755,size=65536k,mkdir",
    ]
    open_sys = script.app_mounts(app("web"), {}, protect_paths=False)  # insecure paths
    assert "/sys/firmware" not in open_sys
    # no /proc/PID/root in the app's root while rkt-exec follows the image's symlinks
    assert steps[-1] == "mount proc /proc proc nosuid,nodev,noexec,mkdir"
    assert "mount /dev/null /dev/null none bind,mkfile" in steps
    assert "symlink /dev/ptmx pts/ptmx" in steps
    assert not [s for s in steps if s.startswith("mknod")]  # /dev is nodev: binds only
    assert ("mount devpts /dev/pts devpts nosuid,noexec,newinstance,ptmxmode=0666,mode=620"
            in steps)
    # nothing of the guest's own /dev (its virtio ports, its disks), no console
    assert not any("rbind" in s or "/dev/console" in s or "/dev/vport" in s for s in steps)


def test_a_readonly_rootfs_is_made_read_only_last() -> None:
    m = MountPlan("data", VolumeKind.HOST, Path("/srv"), "/data")
    steps = script.app_mounts(app("web", readonly_rootfs=True, mounts=(m,)),
                              {m: "rkt.v0"}).splitlines()
    assert steps[-1] == "mount - / none remount,bind,ro"
    assert "remount" not in script.app_mounts(app("web"), {})


def test_an_empty_run_gets_a_tmpfs_with_its_mode_and_owner() -> None:
    run = script.RunDir(0o40755, 0, 12, empty=True)
    steps = script.app_mounts(app("web"), {}, run_dir=run).splitlines()
    assert "mount tmpfs /run tmpfs nosuid,nodev,mode=0755,uid=0,gid=12" in steps
    assert " /run " not in script.app_mounts(app("web"), {})


def test_a_run_with_content_is_copied_into_its_tmpfs_before_the_volumes() -> None:
    m = MountPlan(volume="sock", target="/run/sock", source=Path("/v"),
                  kind=VolumeKind.EMPTY, read_only=False)
    run = script.RunDir(0o41777, 0, 0, empty=False)
    steps = script.app_mounts(app("web", mounts=(m,)), {m: "rkt.v0"}, run_dir=run).splitlines()
    copy = "mount tmpfs /run tmpfs nosuid,nodev,mode=1777,uid=0,gid=0,copyup"
    volume = next(i for i, s in enumerate(steps) if s.startswith("mount rkt.v0 /run/sock"))
    assert steps.index(copy) < volume


def test_the_host_finds_the_apps_run_folder(tmp_path: Path) -> None:
    from pyrkt.linux.beneath import Root
    from pyrkt.stage1.kvm.runner import _run_dir

    def run_dir() -> script.RunDir | None:
        with Root(tmp_path) as r:
            return _run_dir(r)

    assert run_dir() is None  # no /run: nothing mounted
    (tmp_path / "run").mkdir(mode=0o750)
    (tmp_path / "run").chmod(0o750)
    found = run_dir()
    assert found is not None and found.empty and found.options().startswith(
        "nosuid,nodev,mode=0750,")
    (tmp_path / "run" / "lock").mkdir()
    assert run_dir() == replace(found, empty=False)
    (tmp_path / "run" / "lock").rmdir()
    (tmp_path / "run").rmdir()
    (tmp_path / "run").symlink_to("/tmp")  # would be followed outside the rootfs
    assert run_dir() is None
