"""The kvm flavor's assets in a stage1 rootfs: `/kvm/vmlinuz`, `/kvm/initrd.img`, the
VM template protocol its guest speaks (`/kvm/template-protocol`, templates/__init__.py),
and two host-side static programs: the waiter `/kvm/rkt-wait` (`rkt-wait.c`) and the
hypervisor's launcher `/kvm/rkt-jail` (`rkt-jail.c`, see jail.py).

STAGE1-BUILD calls `populate_stage1_rootfs` when it makes the stage1-kvm ACI; at run
time the runner reads them from `contract.stage1_rootfs(pod)/kvm/`.
"""

from __future__ import annotations

import os
from pathlib import Path

from pyrkt.errors import RktError

ASSET_DIR = "kvm"
KERNEL = "vmlinuz"
INITRD = "initrd.img"
KVER = "kernel-release"
# The template protocol (templates/shape.PROTOCOL) of the guest in INITRD, as decimal: a
# host whose protocol differs makes no template from this image (templates.skew).
PROTOCOL = "template-protocol"
WAITER = "rkt-wait"
JAIL = "rkt-jail"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pyrkt" / "kvm"


def kernel_release(kernel: Path) -> str:
    """The release string inside a bzImage ("6.1.0-57-amd64"), from its setup header."""
    with kernel.open("rb") as f:
        head = f.read(0x4000)
        if head[0x202:0x206] != b"HdrS":
            raise RktError(f"{kernel} is not a bzImage kernel")
        off = int.from_bytes(head[0x20E:0x210], "little") + 0x200
        f.seek(off)
        raw = f.read(256)
    return raw.split(b"\0", 1)[0].split(b" ", 1)[0].decode(errors="replace")


def default_kernel() -> Path:
    """The newest /boot/vmlinuz-* that has modules installed (the distro kernel)."""
    found = sorted(Path("/boot").glob("vmlinuz-*"), reverse=True)
    for k in found:
        if (Path("/lib/modules") / k.name.removeprefix("vmlinuz-") / "modules.dep").exists():
            return k
    raise RktError("no guest kernel found in /boot", "install linux-image-amd64")


def populate_stage1_rootfs(rootfs: Path, *, kernel: Path | None = None) -> None:
    """Write the guest kernel and initramfs into a stage1 rootfs (under /kvm/)."""
    import shutil

    from pyrkt.stage1.kvm.guest import initramfs
    from pyrkt.stage1.kvm.templates import shape

    kernel = kernel or default_kernel()
    if not os.access(kernel, os.R_OK):
        raise RktError(f"cannot read guest kernel {kernel}")
    kver = kernel_release(kernel)
    d = rootfs / ASSET_DIR
    d.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kernel, d / KERNEL)
    initramfs.copy_cached(cache_dir(), d / INITRD, kver=kver)
    (d / KVER).write_text(kver + "\n")
    (d / PROTOCOL).write_text(f"{shape.PROTOCOL}\n")  # the guest's, with its initramfs
    shutil.copy2(cached_waiter(cache_dir()), d / WAITER)
    shutil.copy2(cached_program(JAIL, cache_dir()), d / JAIL)


def cached_program(name: str, cache: Path) -> Path:
    """A static program built from NAME.c (gcc -static), cached by the source's hash."""
    return _cached_build(name, cache, build=True)


def _cached_build(name: str, cache: Path, *, build: bool) -> Path:
    import hashlib

    src = _source(name)
    out = cache / f"{name}-{hashlib.sha256(src).hexdigest()[:16]}"
    if out.exists() or not build:
        return out
    import tempfile

    from pyrkt import proc

    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as td:
        c = Path(td) / f"{name}.c"
        c.write_bytes(src)
        proc.run(["gcc", "-static", "-Os", "-s", "-o", Path(td) / name, c])
        os.replace(Path(td) / name, out)  # concurrent builders: same content
    return out


def _source(name: str) -> bytes:
    """NAME.c, a file of this package: beside this module (`importlib.resources`, which
    costs ~2 ms of imports on every pod start, only for a package that is not)."""
    try:
        return Path(__file__).with_name(f"{name}.c").read_bytes()
    except FileNotFoundError:
        from importlib import resources

        return resources.files("pyrkt.stage1.kvm").joinpath(f"{name}.c").read_bytes()


def cached_waiter(cache: Path) -> Path:
    """rkt-wait built from rkt-wait.c, cached by the source's hash."""
    return cached_program(WAITER, cache)


def jail_path(stage1_rootfs: Path) -> Path:
    """rkt-jail built from this pyrkt's rkt-jail.c (its options are the runner's), as
    the stage1 build left it in the cache; else the stage1 image's copy; else built now."""
    cached = _cached_build(JAIL, cache_dir(), build=False)
    if cached.exists():
        return cached
    p = stage1_rootfs / ASSET_DIR / JAIL
    if os.access(p, os.X_OK):
        return p
    try:
        return cached_program(JAIL, cache_dir())
    except RktError as e:
        raise RktError(f"cannot build the VM's launcher {JAIL}: {e}",
                       "install gcc, or use a stage1 image that carries /kvm/rkt-jail") from e


def waiter_path(stage1_rootfs: Path) -> Path | None:
    """The stage1 image's rkt-wait, if it has one (older images do not)."""
    p = stage1_rootfs / ASSET_DIR / WAITER
    return p if os.access(p, os.X_OK) else None


def asset_paths(stage1_rootfs: Path) -> tuple[Path, Path]:
    """(kernel, initrd) of a stage1 rootfs, checked to exist."""
    d = stage1_rootfs / ASSET_DIR
    kernel, initrd = d / KERNEL, d / INITRD
    for p in (kernel, initrd):
        if not p.exists():
            raise RktError(f"stage1 image lacks {p.name}", "is this a kvm stage1?")
    return kernel, initrd
