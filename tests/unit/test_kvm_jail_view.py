"""QEMU's jail as data (stage1/kvm/jail.py): the file view, the launcher's command line,
the pod's jail, the memory limit, the -sandbox flag, the bundled QEMU's direct command.
No root, no VM: the file view is resolved on a folder tree made here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyrkt.errors import RktError
from pyrkt.stage1.build import bundle
from pyrkt.stage1.kvm import hvexec, jail
from pyrkt.stage1.kvm.hypervisors.qemu import SANDBOX, Qemu
from pyrkt.stage1.kvm.jail import Access
from pyrkt.stage1.kvm.vm import Accel, Share, Tap, VmPlan


def pairs(args: list[str]) -> list[tuple[str, ...]]:
    """rkt-jail's view options as tuples: ("--symlink", PATH, TARGET), ("--ro", PATH)."""
    out, i = [], 0
    while i < len(args):
        n = 3 if args[i] == "--symlink" else 2
        out.append(tuple(args[i:i + n]))
        i += n
    return out


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """real/{bin/prog, lib/libx.so.1.2, data/f}; lib/libx.so.1 -> libx.so.1.2 (relative);
    top -> real (relative); abs -> <tmp>/real/lib (absolute); chain -> top/lib/libx.so.1."""
    real = tmp_path / "real"
    for d in ("bin", "lib", "data"):
        (real / d).mkdir(parents=True)
    (real / "bin/prog").write_text("x")
    (real / "lib/libx.so.1.2").write_text("x")
    (real / "data/f").write_text("x")
    (real / "lib/libx.so.1").symlink_to("libx.so.1.2")
    (tmp_path / "top").symlink_to("real")
    (tmp_path / "abs").symlink_to(real / "lib")
    (tmp_path / "chain").symlink_to("top/lib/libx.so.1")
    return tmp_path


def test_symlinks_on_the_way_are_recreated_and_the_real_file_bound(tree: Path) -> None:
    args = jail.view_args(((tree / "chain", Access.EXEC),
                           (tree / "abs/libx.so.1", Access.EXEC)))
    real = tree / "real"
    assert pairs(args) == [
        ("--symlink", str(tree / "abs"), str(real / "lib")),
        ("--symlink", str(tree / "chain"), "top/lib/libx.so.1"),
        ("--symlink", str(real / "lib/libx.so.1"), "libx.so.1.2"),
        ("--symlink", str(tree / "top"), "real"),
        ("--exec", str(real / "lib/libx.so.1.2")),
    ]


def test_a_bind_above_grants_what_it_covers_and_hides_the_links_below(tree: Path) -> None:
    real = tree / "real"
    files = (
        (real, Access.RW),
        (real / "data/f", Access.RO),  # readable through the rw bind: no bind of its own
        (real / "bin/prog", Access.EXEC),  # the rw bind is noexec: a bind of its own
        (tree / "top/lib/libx.so.1", Access.RW),  # the same file through links
    )
    assert pairs(jail.view_args(files)) == [
        ("--symlink", str(tree / "top"), "real"),  # lib/libx.so.1 is inside the bind
        ("--rw", str(real)),
        ("--exec", str(real / "bin/prog")),
    ]


def test_a_flat_path_gets_a_non_recursive_bind_of_its_own(tree: Path) -> None:
    """A recursive=false volume's share: bound without the host's mounts below it, even
    inside a bind that already grants it."""
    real = tree / "real"
    files = ((real, Access.RW), (real / "data", Access.RO), (real / "bin", Access.RW))
    assert pairs(jail.view_args(files, flat=(real / "data", real / "bin"))) == [
        ("--rw", str(real)),
        ("--rw-flat", str(real / "bin")),
        ("--ro-flat", str(real / "data")),
    ]


def test_the_same_path_asked_twice_keeps_the_wider_access(tree: Path) -> None:
    f = tree / "real/data/f"
    assert pairs(jail.view_args(((f, Access.RO), (f, Access.RW)))) == [("--rw", str(f))]
    assert pairs(jail.view_args(((f, Access.EXEC), (f, Access.RO)))) == [("--exec", str(f))]
    with pytest.raises(RktError, match="both"):
        jail.view_args(((f, Access.EXEC), (f, Access.RW)))


def test_dotdot_in_a_link_is_taken_from_the_links_target(tree: Path) -> None:
    # abs -> <tmp>/real/lib, so abs/../data is real/data, not <tmp>/data.
    (tree / "updata").symlink_to("abs/../data/f")
    args = jail.view_args(((tree / "updata", Access.RO),))
    assert ("--ro", str(tree / "real/data/f")) in pairs(args)


def test_missing_paths_relative_paths_and_link_loops_are_errors(tree: Path) -> None:
    with pytest.raises(RktError, match="No such file"):
        jail.view_args(((tree / "real/none", Access.RO),))
    with pytest.raises(RktError, match="absolute"):
        jail.view_args(((Path("real"), Access.RO),))
    (tree / "loop").symlink_to("loop")
    with pytest.raises(RktError, match="too many symbolic links"):
        jail.view_args(((tree / "loop", Access.RO),))
    (tree / "root").symlink_to("/")
    with pytest.raises(RktError, match="root folder"):
        jail.view_args(((tree / "root", Access.RW),))


def plan(tmp: Path, **kw: object) -> VmPlan:
    base: dict[str, object] = dict(
        kernel=tmp / "pod/stage1/rootfs/kvm/vmlinuz",
        initrd=tmp / "pod/stage1/rootfs/kvm/initrd",
        cmdline=(), vcpus=1, memory_mib=256, accel=Accel.TCG, app_log_dir=Path("logs"),
        shares=(Share("rkt.stage1", tmp / "pod/stage1/rootfs"),
                Share("rkt.v0", tmp / "vol", read_only=True)),
    )
    base.update(kw)
    return VmPlan(**base)  # type: ignore[arg-type]


def test_a_pods_jail_holds_its_folders_shares_files_and_devices(tmp_path: Path) -> None:
    pod = tmp_path / "pod"
    qemu = ((Path("/usr/bin/qemu-system-x86_64"), Access.EXEC),)
    j = jail.for_pod(pod, plan(tmp_path), qemu, netns=None, cgroups=(Path("/cg/tasks"),))
    assert j.chdir == pod and j.netns is None and j.cgroups == (Path("/cg/tasks"),)
    files = dict(j.files)
    assert files[pod / "kvm"] is Access.RW and files[pod / "logs"] is Access.RW
    assert files[pod / "stage1/rootfs"] is Access.RW and files[tmp_path / "vol"] is Access.RO
    assert files[pod / "stage1/rootfs/kvm/vmlinuz"] is Access.RO
    assert files[Path("/usr/bin/qemu-system-x86_64")] is Access.EXEC
    assert files[Path("/dev/null")] is Access.DEV and Path("/dev/kvm") not in files
    assert Path("/dev/net/tun") not in files
    kvm_net = jail.for_pod(pod, plan(tmp_path, accel=Accel.KVM, taps=(Tap("tap0", "m"),)),
                           qemu, netns=Path("/run/netns/x"))
    assert dict(kvm_net.files)[Path("/dev/kvm")] is Access.DEV
    assert dict(kvm_net.files)[Path("/dev/net/tun")] is Access.DEV
    assert kvm_net.netns == Path("/run/netns/x")


def test_launcher_command_line_order(tree: Path) -> None:
    j = jail.Jail(files=((tree / "real/bin/prog", Access.EXEC),), chdir=tree / "real",
                  netns=Path("/run/netns/p"), cgroups=(Path("/a/tasks"), Path("/b/tasks")))
    argv = jail.launcher_argv(Path("/x/rkt-jail"), j, ["/real/prog", "-v"], seccomp_fd=7)
    assert argv == [
        "/x/rkt-jail", "--pdeathsig", "--seccomp-fd", "7", "--netns", "/run/netns/p",
        "--cgroup", "/a/tasks", "--cgroup", "/b/tasks", "--root", str(tree / "real"),
        "--exec", str(tree / "real/bin/prog"), "--proc", "--chdir", str(tree / "real"),
        "--caps", "b", "--", "/real/prog", "-v",
    ]  # caps b: CAP_CHOWN (0), CAP_DAC_OVERRIDE (1), CAP_FOWNER (3)
    with pytest.raises(RktError):
        jail.launcher_argv(Path("/x"), jail.Jail(files=(), chdir=Path("/")), ["/p"])


def test_memory_limit_is_the_vm_plus_qemus_overhead(tmp_path: Path) -> None:
    assert jail.memory_limit(plan(tmp_path, memory_mib=256)) == (256 + 160 + 16) << 20
    assert jail.memory_limit(plan(tmp_path, memory_mib=1024)) == (1024 + 160 + 64) << 20


def test_qemu_sandbox_flag_only_when_asked(tmp_path: Path) -> None:
    with_sandbox = Qemu().argv(plan(tmp_path, sandbox=True))
    assert with_sandbox[with_sandbox.index("-sandbox") + 1] == SANDBOX
    assert SANDBOX == "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
    assert "-sandbox" not in Qemu().argv(plan(tmp_path))


def test_bundled_qemu_runs_through_its_loader_in_its_executable_folder(tmp_path: Path) -> None:
    s1 = tmp_path / "rootfs"
    wrapper = s1 / bundle.WRAPPER_DIR / bundle.QEMU_BINARY
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(bundle.wrapper_script(bundle.QEMU_BINARY))
    exe = hvexec.for_path(wrapper, bundle.QEMU_BINARY, s1, tmp_path / "cache")
    here = s1 / bundle.BUNDLE_DIR
    assert exe.argv0 == (str(here / "lib" / bundle.LOADER), "--library-path", str(here / "lib"),
                         "--argv0", str(wrapper), str(here / "bin" / bundle.QEMU_BINARY),
                         "-L", str(here / "share/qemu"))
    assert dict(exe.env) == {"QEMU_MODULE_DIR": str(here / "modules")}
    assert exe.files == ((here, Access.EXEC),)
    assert not (tmp_path / "cache").exists()


def test_host_files_come_from_the_cache_while_the_binary_is_unchanged(tmp_path: Path) -> None:
    binary = tmp_path / "qemu"
    binary.write_text("not scanned")
    lib = tmp_path / "libq.so"
    lib.write_text("x")
    st = binary.stat()
    key = f"{binary}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    (tmp_path / hvexec.CACHE_FILE).write_text(
        f'{{"key": "{key}", "files": [["{binary}", "exec"], ["{lib}", "exec"]]}}')
    assert hvexec.host_files(binary, tmp_path) == ((binary, Access.EXEC), (lib, Access.EXEC))
    os.utime(binary, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(RktError):  # a changed binary is scanned again (ldd: not an ELF)
        hvexec.host_files(binary, tmp_path)
