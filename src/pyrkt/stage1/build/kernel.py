"""The guest kernel of the kvm flavor: a tailored build, cached once per machine.

The tailored kernel is Debian's `linux-source-6.1` tarball configured as
`make tinyconfig` + `kernel.config` (this folder) + `make olddefconfig`, built with
`nice make bzImage`. It has everything the guest needs built in (virtio, 9p, vsock,
overlayfs, cgroups, namespaces), so it needs no modules.

The result is cached under `/var/cache/pyrkt/kernel/<key>/` (override with
`PYRKT_KERNEL_CACHE`), where the key hashes the source tarball's identity and the
fragment: a build happens once per machine, in a temporary folder renamed into place,
with concurrent callers waiting on a lock file. The distro kernel
(`/boot/vmlinuz-*` of linux-image-amd64, with its modules in `/lib/modules`) needs no
build and stays the fallback.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pyrkt import log, proc
from pyrkt.errors import RktError

SOURCE_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
SOURCE_PACKAGE = "linux-source-6.1"
FRAGMENT = Path(__file__).with_name("kernel.config")
DEFAULT_CACHE = Path("/var/cache/pyrkt/kernel")
CACHE_ENV = "PYRKT_KERNEL_CACHE"


class KernelKind(StrEnum):
    """`--kernel=` values besides a path."""

    DISTRO = "distro"
    TAILORED = "tailored"


@dataclass(frozen=True)
class GuestKernel:
    """A kernel for the guest: the image QEMU boots and, for a modular kernel, its modules."""

    image: Path
    kind: str  # "tailored", "distro" or "path"
    release: str  # `uname -r` of the guest, when known ("" otherwise)
    modules: Path | None = None  # /lib/modules/<release> for a modular kernel
    vmlinux: Path | None = None  # uncompressed ELF (PVH boot), tailored kernels only
    config: Path | None = None


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def fragment_options(fragment: Path = FRAGMENT) -> dict[str, str]:
    """`CONFIG_X` -> value for each option the fragment sets ("n" for `is not set`)."""
    opts: dict[str, str] = {}
    for n, line in enumerate(fragment.read_text().splitlines(), 1):
        line = line.strip()
        unset = re.fullmatch(r"# (CONFIG_[A-Z0-9_]+) is not set", line)
        if unset:
            opts[unset.group(1)] = "n"
            continue
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"(CONFIG_[A-Z0-9_]+)=(.+)", line)
        if not m:
            raise RktError(f"{fragment}:{n}: not a kernel config line: {line!r}")
        opts[m.group(1)] = m.group(2)
    return opts


def missing_options(config_text: str, wanted: dict[str, str]) -> list[str]:
    """The fragment options that a final .config does not have with the wanted value."""
    have: dict[str, str] = {}
    for line in config_text.splitlines():
        m = re.fullmatch(r"(CONFIG_[A-Z0-9_]+)=(.+)", line.strip())
        if m:
            have[m.group(1)] = m.group(2)
    return [f"{k}={v}" for k, v in wanted.items() if have.get(k, "n") != v]


def cache_key(source: Path = SOURCE_TARBALL, fragment: Path = FRAGMENT) -> str:
    """Hash of the source tarball's identity (name, size, mtime) and the fragment text."""
    st = source.stat()
    h = hashlib.sha256()
    h.update(f"{source.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    h.update(fragment.read_bytes())
    return h.hexdigest()[:16]


def _from_dir(d: Path) -> GuestKernel:
    release_file = d / "release"
    return GuestKernel(
        image=d / "bzImage",
        kind=KernelKind.TAILORED.value,
        release=release_file.read_text().strip() if release_file.exists() else "",
        vmlinux=d / "vmlinux" if (d / "vmlinux").exists() else None,
        config=d / "config",
    )


def cached_tailored_kernel(cache: Path | None = None) -> GuestKernel | None:
    """The tailored kernel if it is already built on this machine, without building."""
    if not SOURCE_TARBALL.exists():
        return None
    d = (cache or cache_root()) / cache_key()
    return _from_dir(d) if (d / "bzImage").is_file() else None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_tailored_kernel(
    cache: Path | None = None,
    *,
    jobs: int = 2,
    progress: Callable[[str], None] | None = None,
) -> GuestKernel:
    """The tailored kernel, building it first (minutes) if this machine has none yet."""
    if not SOURCE_TARBALL.exists():
        raise RktError(
            f"kernel source {SOURCE_TARBALL} not found",
            f"apt-get install {SOURCE_PACKAGE}, or use --kernel=distro",
        )
    root = cache or cache_root()
    key = cache_key()
    final = root / key
    with _locked(root / f"{key}.lock"):
        if (final / "bzImage").is_file():
            return _from_dir(final)
        say = progress or log.info
        say(f"building the tailored guest kernel into {final} (takes minutes, once)")
        with tempfile.TemporaryDirectory(prefix=f".build-{key}-", dir=root) as tmp:
            out = _build(Path(tmp), jobs=jobs, say=say)
            os.replace(out, final)
    return _from_dir(final)


def _build(work: Path, *, jobs: int, say: Callable[[str], None]) -> Path:
    src = work / "src"
    src.mkdir()
    proc.run(["tar", "-xf", SOURCE_TARBALL, "-C", src, "--strip-components=1"])
    make: list[proc.Arg] = ["nice", "-n", "10", "make", "-s", "-C", src, "ARCH=x86_64"]
    proc.run([*make, "tinyconfig"])
    wanted = fragment_options()
    proc.run(
        [src / "scripts/kconfig/merge_config.sh", "-m", "-O", src, src / ".config", FRAGMENT],
        cwd=src,
        capture=True,
    )
    proc.run([*make, "olddefconfig"])
    missing = missing_options((src / ".config").read_text(), wanted)
    if missing:
        raise RktError(
            "tailored kernel config lacks: " + " ".join(missing),
            f"fix the dependencies in {FRAGMENT}",
        )
    say(f"compiling the kernel with -j{jobs}")
    proc.run([*make, f"-j{jobs}", "bzImage"])
    out = work / "out"
    out.mkdir()
    shutil.copy2(src / "arch/x86/boot/bzImage", out / "bzImage")
    shutil.copy2(src / ".config", out / "config")
    proc.run(["strip", "-o", out / "vmlinux", src / "vmlinux"])
    release = proc.output([*make, "kernelrelease"]).strip().splitlines()[-1]
    (out / "release").write_text(release + "\n")
    return out


def distro_kernel() -> GuestKernel:
    """The newest `/boot/vmlinuz-*` that has its modules in /lib/modules (no build)."""
    found: list[tuple[tuple[int, ...], GuestKernel]] = []
    for image in Path("/boot").glob("vmlinuz-*"):
        release = image.name.removeprefix("vmlinuz-")
        modules = Path("/lib/modules") / release
        if "cloud" in release or not (modules / "modules.dep").exists():
            continue  # the cloud kernel has no 9p
        version = tuple(int(x) for x in re.findall(r"\d+", release)[:4])
        found.append(
            (version, GuestKernel(image=image, kind="distro", release=release, modules=modules))
        )
    if not found:
        raise RktError(
            "no distro kernel with modules found in /boot",
            "apt-get install linux-image-amd64, or use --kernel=tailored",
        )
    return max(found, key=lambda f: f[0])[1]


def resolve_kernel(spec: str, *, build: bool = True) -> GuestKernel:
    """`--kernel=` value -> a kernel: "distro", "tailored" (built if needed) or a path."""
    if spec == KernelKind.DISTRO:
        return distro_kernel()
    if spec == KernelKind.TAILORED:
        if build:
            return ensure_tailored_kernel()
        k = cached_tailored_kernel()
        if k is None:
            raise RktError("the tailored kernel is not built yet", "run 'rkt stage1 build'")
        return k
    path = Path(spec)
    if not path.is_file():
        raise RktError(f"kernel image {spec!r} not found", "use distro, tailored or a path")
    return GuestKernel(image=path, kind="path", release="")
