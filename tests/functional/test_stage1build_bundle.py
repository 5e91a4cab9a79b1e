"""The QEMU bundled into a kvm stage1 boots a VM on its own: no QEMU on the PATH, and
(checked with strace where present) no library, module or firmware from the host.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pyrkt.stage1.build import bundle, kernel

MARKER = "pyrkt-bundled-qemu-ok"
HOST_QEMU_PATHS = re.compile(
    r'"(/usr/lib/x86_64-linux-gnu/[^"]*|/lib/x86_64-linux-gnu/[^"]*|/usr/share/qemu/[^"]*'
    r'|/usr/share/seabios/[^"]*|/usr/lib/ipxe/[^"]*)"'
)


def tiny_initramfs(out: Path, work: Path) -> Path:
    """busybox + an init that prints MARKER on the serial console and powers off."""
    root = work / "initramfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy2("/usr/bin/busybox", root / "bin/busybox")
    (root / "init").write_text(
        "#!/bin/busybox sh\n"
        f"/bin/busybox echo {MARKER}\n"
        "/bin/busybox poweroff -f\n"
    )
    (root / "init").chmod(0o755)
    names = "\n".join(["init", "bin", "bin/busybox"]) + "\n"
    with out.open("wb") as f:
        subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet"], input=names.encode(), cwd=root,
            stdout=f, check=True,
        )
    return out


def guest_kernel() -> Path:
    k = kernel.cached_tailored_kernel()
    return k.image if k is not None else kernel.distro_kernel().image


@pytest.mark.qemu
@pytest.mark.parametrize("machine", ["pc", "microvm"])
def test_bundled_qemu_boots_without_host_qemu(tmp_path: Path, machine: str) -> None:
    rootfs = tmp_path / "rootfs"
    wrapper = bundle.bundle_qemu(rootfs)
    assert wrapper == rootfs / "kvm/bin/qemu-system-x86_64"
    assert bundle.bundled_hypervisor(rootfs, "qemu-system-x86_64") == wrapper
    initrd = tiny_initramfs(tmp_path / "initrd.img", tmp_path)
    argv = [
        str(wrapper), "-nodefaults", "-no-user-config", "-nographic",
        "-M", machine, "-accel", "tcg", "-m", "128", "-no-reboot",
        "-kernel", str(guest_kernel()), "-initrd", str(initrd),
        "-append", "console=ttyS0 panic=-1 tsc_early_khz=2000000",
        "-serial", "stdio",
    ]  # fmt: skip
    env = {"PATH": "/nonexistent"}  # no qemu (nor anything else) to find on the PATH
    trace = tmp_path / "strace.log"
    if shutil.which("strace"):
        argv = ["strace", "-f", "-qq", "-e", "trace=openat,execve", "-o", str(trace), *argv]
        argv[0] = shutil.which("strace") or "strace"
    try:
        cp = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
        pytest.fail(f"VM did not power off in 120 s\nargv: {argv}\nserial:\n{out}")
    detail = (
        f"argv: {argv}\nexit: {cp.returncode}\n"
        f"serial/stdout:\n{cp.stdout}\nstderr:\n{cp.stderr}"
    )
    assert MARKER in cp.stdout, detail
    if trace.exists():
        host_files = _host_files_opened_by_qemu(trace.read_text())
        assert not host_files, f"bundled QEMU opened host files: {host_files}\n{detail}"


def _host_files_opened_by_qemu(trace: str) -> list[str]:
    """Host library/firmware paths opened after the bundled loader was executed."""
    qemu_pids: set[str] = set()
    found: list[str] = []
    for line in trace.splitlines():
        pid = line.split(" ", 1)[0]
        if "execve(" in line and bundle.LOADER in line and "= 0" in line:
            qemu_pids.add(pid)
            continue
        if pid in qemu_pids and "openat(" in line and "ENOENT" not in line:
            m = HOST_QEMU_PATHS.search(line)
            if m:
                found.append(m.group(1))
    return found


def test_wrapper_script_runs_the_bundled_loader() -> None:
    text = bundle.wrapper_script("qemu-system-x86_64")
    assert text.startswith("#!/bin/sh\n")
    assert f'"$here/lib/{bundle.LOADER}" --library-path "$here/lib"' in text
    assert '-L "$here/share/qemu"' in text and "QEMU_MODULE_DIR" in text
    # the wrapper needs no external command (dirname etc.), only the shell
    assert "dirname" not in text and os.sep + "usr" not in text


def test_bundled_program_runs_with_its_own_loader(tmp_path: Path) -> None:
    """A dynamic hypervisor binary (here /usr/bin/true standing in for lkvm) runs from the
    bundle with an empty PATH and no host library directory to fall back on."""
    rootfs = tmp_path / "rootfs"
    wrapper = bundle.bundle_program(rootfs, Path("/usr/bin/true"), "lkvm")
    assert wrapper == rootfs / "kvm/bin/lkvm"
    assert (rootfs / "kvm/lkvm/lib" / bundle.LOADER).exists()
    assert (rootfs / "kvm/lkvm/lib/libc.so.6").exists()
    cp = subprocess.run([str(wrapper)], env={"PATH": "/nonexistent"}, capture_output=True,
                        text=True, check=False)  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    static = bundle.bundle_program(tmp_path / "r2", Path("/usr/bin/busybox"), "lkvm")
    assert bundle.LOADER not in static.read_text()
    assert not (tmp_path / "r2/kvm/lkvm/lib").exists()
