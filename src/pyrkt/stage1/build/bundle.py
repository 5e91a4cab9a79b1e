"""Put the host's QEMU into a stage1 rootfs so the image runs VMs on hosts without QEMU.

Layout inside the stage1 rootfs (the contract with the kvm flavor's runner):

    kvm/bin/qemu-system-x86_64        sh wrapper: the command the runner executes
    kvm/qemu/bin/qemu-system-x86_64   the real binary
    kvm/qemu/lib/                     every library `ldd` names, and the dynamic loader
    kvm/qemu/modules/                 QEMU's loadable modules it needs (accel-tcg-x86_64)
    kvm/qemu/share/qemu/              firmware and option ROMs for -M pc and -M microvm

The wrapper runs the binary through the bundled loader (`ld-linux-x86-64.so.2
--library-path`), so the host's libraries are never mixed in, sets QEMU_MODULE_DIR, and
passes `-L` for the firmware. A runner that finds `kvm/bin/<binary>` in the stage1
rootfs runs it instead of the host's QEMU (see `bundled_hypervisor`).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from pyrkt import proc
from pyrkt.errors import RktError

QEMU_BINARY = "qemu-system-x86_64"
WRAPPER_DIR = "kvm/bin"
BUNDLE_DIR = "kvm/qemu"
LOADER = "ld-linux-x86-64.so.2"
# Loadable modules QEMU opens for what the kvm flavor uses (Debian builds TCG as one).
MODULES = ("accel-tcg-x86_64.so",)
# Firmware opened by `-M pc` (SeaBIOS, linuxboot, vapic, the virtio-net option ROM) and
# by `-M microvm` (qboot, PVH loader), as measured with strace on QEMU 7.2.
FIRMWARE = (
    "bios-256k.bin",
    "bios-microvm.bin",
    "linuxboot_dma.bin",
    "linuxboot.bin",
    "kvmvapic.bin",
    "pvh.bin",
    "efi-virtio.rom",
)
# Libraries loaded with dlopen at run time, which ldd cannot see.
DLOPENED = ("libgcc_s.so.1",)


def bundled_hypervisor(stage1_rootfs: Path, binary: str) -> Path | None:
    """The bundled wrapper for `binary` in a stage1 rootfs, if the image carries one."""
    p = stage1_rootfs / WRAPPER_DIR / binary
    return p if p.is_file() else None


def ldd_paths(binary: Path) -> list[Path]:
    """The absolute paths of the shared libraries (and loader) `ldd` lists for binary."""
    out = proc.output(["ldd", binary])
    paths: list[Path] = []
    for line in out.splitlines():
        line = line.strip()
        if "not found" in line:
            raise RktError(f"{binary}: library missing: {line}")
        m = re.search(r"=>\s*(/\S+)", line) or re.match(r"(/\S+)\s+\(", line)
        if m:
            paths.append(Path(m.group(1)))
    return paths


def qemu_search_dirs(qemu: Path) -> list[Path]:
    """The firmware directories this QEMU searches (`-L help`)."""
    out = proc.output([qemu, "-L", "help"])
    return [Path(line.strip()).resolve() for line in out.splitlines() if line.strip()]


def module_dir(qemu: Path) -> Path:
    """Where this QEMU keeps its loadable modules (Debian: lib/<triplet>/qemu)."""
    base = qemu.resolve().parent.parent
    for cand in [*sorted(base.glob("lib/*/qemu")), base / "lib/qemu"]:
        if any((cand / m).exists() for m in MODULES):
            return cand
    raise RktError(f"no QEMU modules directory found for {qemu}")


def _find(name: str, dirs: Iterable[Path]) -> Path | None:
    for d in dirs:
        if (d / name).exists():
            return (d / name).resolve()
    return None


def find_library(name: str) -> Path | None:
    """A library of the host's multiarch folders (one QEMU opens with dlopen)."""
    return _find(name, [Path("/lib/x86_64-linux-gnu"), Path("/usr/lib/x86_64-linux-gnu")])


def entrypoint_with_bundle(script: str) -> str:
    """A stage1 entrypoint script that puts this image's `kvm/bin` first on the PATH.

    The kvm runner then starts the bundled QEMU (and its accelerator probe finds it too);
    `PYRKT_HOST_HYPERVISOR=1` in rkt's environment uses the host's QEMU instead.
    """
    lines = script.splitlines(keepends=True)
    prefix = (
        '# this image carries its hypervisor: put it first on the PATH\n'
        'case "$0" in /*) s1="${0%/*}" ;; *) s1="$PWD/${0%/*}" ;; esac\n'
        '[ -n "${PYRKT_HOST_HYPERVISOR:-}" ] || '
        f'PATH="$s1/{WRAPPER_DIR}:${{PATH:-/usr/bin:/bin}}"\n'
        "export PATH\n"
    )
    at = next(i for i, line in enumerate(lines) if line.startswith("exec "))
    return "".join([*lines[:at], prefix, *lines[at:]])


def wrapper_script(binary: str) -> str:
    return (
        "#!/bin/sh\n"
        "# pyrkt: run the QEMU bundled in this stage1 with its own loader and libraries.\n"
        'here="${0%/*}/../qemu"\n'
        'QEMU_MODULE_DIR="$here/modules" export QEMU_MODULE_DIR\n'
        f'exec "$here/lib/{LOADER}" --library-path "$here/lib" --argv0 "$0" \\\n'
        f'  "$here/bin/{binary}" -L "$here/share/qemu" "$@"\n'
    )


def bundled_exec(stage1_rootfs: Path,
                 binary: str = QEMU_BINARY) -> tuple[list[str], dict[str, str]]:
    """What the wrapper (`wrapper_script`) execs, without the shell: the bundled
    loader's command line and QEMU_MODULE_DIR (for a launcher that has no /bin/sh,
    such as the kvm runner's jail)."""
    here = stage1_rootfs / BUNDLE_DIR
    argv = [str(here / "lib" / LOADER), "--library-path", str(here / "lib"),
            "--argv0", str(stage1_rootfs / WRAPPER_DIR / binary), str(here / "bin" / binary),
            "-L", str(here / "share/qemu")]
    return argv, {"QEMU_MODULE_DIR": str(here / "modules")}


def _program_wrapper(subdir: str, binary: str, dynamic: bool) -> str:
    run = (
        f'exec "$here/lib/{LOADER}" --library-path "$here/lib" --argv0 "$0" '
        f'"$here/bin/{binary}" "$@"\n'
        if dynamic
        else f'exec "$here/bin/{binary}" "$@"\n'
    )
    return (
        "#!/bin/sh\n"
        f"# pyrkt: run the {binary} bundled in this stage1 with its own loader and libraries.\n"
        f'here="${{0%/*}}/../{subdir}"\n' + run
    )


def bundle_program(rootfs: Path, program: Path, binary: str) -> Path:
    """Copy a hypervisor binary (and, if dynamic, its libraries and loader) into
    rootfs/kvm/<binary>/ and write the wrapper kvm/bin/<binary>; return the wrapper."""
    program = program.resolve()
    base = rootfs / "kvm" / binary
    (base / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(program, base / "bin" / binary)
    ldd = proc.run(["ldd", program], check=False, capture=True)
    dynamic = ldd.returncode == 0 and "statically linked" not in ldd.stdout
    if dynamic:
        libs = {lib.name: lib for lib in ldd_paths(program)}
        if LOADER not in libs:
            raise RktError(f"ldd {program} names no {LOADER}")
        (base / "lib").mkdir(exist_ok=True)
        for name, src in libs.items():
            shutil.copy2(src.resolve(), base / "lib" / name)
    wrapper = rootfs / WRAPPER_DIR / binary
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(_program_wrapper(binary, binary, dynamic))
    wrapper.chmod(0o755)
    return wrapper


def bundle_qemu(
    rootfs: Path,
    *,
    qemu: Path | None = None,
    firmware: Sequence[str] = FIRMWARE,
) -> Path:
    """Copy QEMU, its libraries, modules and firmware into rootfs; return the wrapper."""
    if qemu is None:
        found = shutil.which(QEMU_BINARY)
        if found is None:
            raise RktError(
                f"{QEMU_BINARY} not found to bundle", "apt-get install qemu-system-x86"
            )
        qemu = Path(found)
    qemu = qemu.resolve()
    base = rootfs / BUNDLE_DIR
    for sub in ("bin", "lib", "modules", "share/qemu"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(qemu, base / "bin" / QEMU_BINARY)

    mods = [module_dir(qemu) / m for m in MODULES]
    libs: dict[str, Path] = {}
    for obj in [qemu, *mods]:
        for lib in ldd_paths(obj):
            libs.setdefault(lib.name, lib)
    for name in DLOPENED:
        extra = find_library(name)
        if extra is not None:
            libs.setdefault(name, extra)
    if LOADER not in libs:
        raise RktError(f"ldd {qemu} names no {LOADER}", "only x86-64 glibc hosts are supported")
    for name, src in libs.items():
        shutil.copy2(src.resolve(), base / "lib" / name)
    for m in mods:
        shutil.copy2(m, base / "modules" / m.name)

    dirs = qemu_search_dirs(qemu)
    missing: list[str] = []
    for fw in firmware:
        found_fw = _find(fw, dirs)
        if found_fw is None:
            missing.append(fw)
            continue
        shutil.copy2(found_fw, base / "share/qemu" / fw)
    if missing:
        raise RktError(f"QEMU firmware not found: {', '.join(missing)}", f"searched {dirs}")

    wrapper = rootfs / WRAPPER_DIR / QEMU_BINARY
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(wrapper_script(QEMU_BINARY))
    wrapper.chmod(0o755)
    return wrapper
