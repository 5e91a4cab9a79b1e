"""Stage1 images: one ACI per flavor (and per hypervisor for kvm), named as rkt named them.

`build_stage1_aci` writes `stage1-<flavor>.aci` (or `stage1-kvm-<hypervisor>.aci` when
several hypervisors are built at once, as the seed describes). The rootfs holds the
entrypoints of rkt's stage1 contract (`/run`, `/enter`, `/stop`, `/gc`) as tiny `sh`
scripts that exec this project's stage1 module with the host's Python, plus the flavor's
assets (the kvm flavor: kernel and initramfs under `/kvm/`).

`ensure_stage1` builds an image on demand into a cache under the data dir, so that a
plain `rkt run` needs no build step; the cache key changes whenever the code that goes
into the image changes.
"""

from __future__ import annotations

import enum
import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path

from pyrkt import APPC_SPEC_VERSION, __version__
from pyrkt.options import GlobalOptions
from pyrkt.stage1 import contract


class Flavor(enum.StrEnum):
    COREOS = "coreos"  # namespaces and cgroups (rkt's default)
    FLY = "fly"  # chroot only
    KVM = "kvm"  # each pod in its own virtual machine


class Hypervisor(enum.StrEnum):
    QEMU = "qemu"
    LKVM = "lkvm"


# The Python module that implements each flavor's entrypoints.
FLAVOR_MODULE = {
    Flavor.COREOS: "pyrkt.stage1.container",
    Flavor.FLY: "pyrkt.stage1.fly",
    Flavor.KVM: "pyrkt.stage1.kvm",
}
ENTRYPOINTS = {
    "run": contract.ANN_RUN,
    "enter": contract.ANN_ENTER,
    "stop": contract.ANN_STOP,
    "gc": contract.ANN_GC,
}
IMAGE_NAME_PREFIX = "coreos.com/rkt/stage1-"

Populate = Callable[[Path], None]


def image_name(flavor: Flavor) -> str:
    return IMAGE_NAME_PREFIX + flavor.value


def aci_filename(
    flavor: Flavor, hypervisor: Hypervisor | None = None, *, several: bool = False
) -> str:
    """stage1-coreos.aci, stage1-kvm.aci, or stage1-kvm-qemu.aci when several are built."""
    if flavor is Flavor.KVM and several and hypervisor is not None:
        return f"stage1-kvm-{hypervisor.value}.aci"
    return f"stage1-{flavor.value}.aci"


def go_arch() -> str:
    import platform

    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def image_version(hypervisor: Hypervisor | None = None) -> str:
    """The version label: the kvm images of each hypervisor share a name, so the version
    tells them apart (`--stage1-name=coreos.com/rkt/stage1-kvm:0.1.0-qemu`)."""
    return __version__ if hypervisor is None else f"{__version__}-{hypervisor.value}"


def builtin_image(ref: str) -> tuple[Flavor, Hypervisor | None] | None:
    """The flavor (and kvm hypervisor) of one of our own image names, else None:
    `coreos.com/rkt/stage1-fly`, `...-kvm:0.1.0`, `...-kvm:0.1.0-lkvm` (see image_version)."""
    name, _, version = ref.partition(":")
    if not name.startswith(IMAGE_NAME_PREFIX):
        return None
    try:
        flavor = Flavor(name[len(IMAGE_NAME_PREFIX) :])
    except ValueError:
        return None
    if version in ("", __version__):
        return flavor, None
    if flavor is Flavor.KVM:
        for hv in Hypervisor:
            if version == image_version(hv):
                return flavor, hv
    return None


def stage1_manifest(flavor: Flavor, hypervisor: Hypervisor | None = None) -> dict[str, object]:
    annotations = [{"name": ann, "value": f"/{verb}"} for verb, ann in ENTRYPOINTS.items()]
    annotations.append(
        {"name": contract.ANN_INTERFACE_VERSION, "value": str(contract.INTERFACE_VERSION)}
    )
    annotations.append({"name": contract.ANN_FLAVOR, "value": flavor.value})
    if hypervisor is not None:
        annotations.append({"name": contract.ANN_HYPERVISOR, "value": hypervisor.value})
    return {
        "acKind": "ImageManifest",
        "acVersion": APPC_SPEC_VERSION,
        "name": image_name(flavor),
        "labels": [
            {"name": "version", "value": image_version(hypervisor)},
            {"name": "os", "value": "linux"},
            {"name": "arch", "value": go_arch()},
        ],
        "annotations": annotations,
    }


def entrypoint_script(flavor: Flavor, verb: str) -> str:
    module = FLAVOR_MODULE[flavor]
    return (
        "#!/bin/sh\n"
        f"# rkt stage1 entrypoint '{verb}' of the {flavor.value} flavor (pyrkt).\n"
        f'exec "${{{contract.ENV_PYTHON}:-python3}}" -m {module} {verb} "$@"\n'
    )


def write_rootfs(rootfs: Path, flavor: Flavor) -> None:
    rootfs.mkdir(parents=True, exist_ok=True)
    for verb in ENTRYPOINTS:
        p = rootfs / verb
        p.write_text(entrypoint_script(flavor, verb))
        p.chmod(0o755)
    for d in ("opt/stage2", "rkt/status", "etc"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)


def default_populate(flavor: Flavor, hypervisor: Hypervisor | None) -> Populate | None:
    """The flavor's asset writer: for kvm, the kernel (tailored when this machine has
    built it, else the distro kernel) and initramfs, with the host's hypervisor."""
    if flavor is not Flavor.KVM:
        return None
    from pyrkt.stage1.build import builder, kernel

    guest = kernel.cached_tailored_kernel() or kernel.distro_kernel()
    return builder.kvm_populate(guest, hypervisor or Hypervisor.QEMU, bundle_qemu=False)


def build_stage1_aci(
    flavor: Flavor,
    out_dir: Path,
    hypervisor: Hypervisor | None = None,
    *,
    several: bool = False,
    populate: Populate | None = None,
) -> Path:
    """Write the stage1 ACI into out_dir atomically; return its path."""
    if flavor is Flavor.KVM and hypervisor is None:
        hypervisor = Hypervisor.QEMU
    if flavor is not Flavor.KVM:
        hypervisor = None
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / aci_filename(flavor, hypervisor, several=several)
    fill = populate if populate is not None else default_populate(flavor, hypervisor)
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory(prefix=".stage1-build-", dir=out_dir) as tmp:
        work = Path(tmp)
        rootfs = work / "rootfs"
        write_rootfs(rootfs, flavor)
        if fill is not None:
            fill(rootfs)
        (work / "manifest").write_text(json.dumps(stage1_manifest(flavor, hypervisor)))
        partial = work / "image.aci"
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(work / "manifest", arcname="manifest")
            tar.add(rootfs, arcname="rootfs")
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, target)
    return target


def _code_hash(flavor: Flavor) -> str:
    """A digest of the code that goes into a flavor's image: a change rebuilds it."""
    import hashlib

    here = Path(__file__).resolve().parent
    roots = [here]
    h = hashlib.sha256(__version__.encode())
    if flavor is Flavor.KVM:
        roots.append(here.parent / "kvm")
        from pyrkt.stage1.build import kernel

        tailored = kernel.cached_tailored_kernel()  # its arrival rebuilds the image
        h.update(str(tailored.image if tailored else "distro").encode())
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(root.parent)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()[:16]


def ensure_stage1(
    g: GlobalOptions, flavor: Flavor | str, hypervisor: Hypervisor | str | None = None
) -> Path:
    """The path of a built stage1 ACI for this flavor, building it into the cache if needed."""
    fl = Flavor(flavor)
    hv = Hypervisor(hypervisor) if hypervisor is not None else None
    if fl is Flavor.KVM and hv is None:
        hv = Hypervisor.QEMU
    cache = g.dir / "cache" / "stage1" / f"{fl.value}-{hv.value if hv else 'none'}"
    cache = cache / _code_hash(fl)
    path = cache / aci_filename(fl, hv)
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            build_stage1_aci(fl, cache, hv)
            # older builds of this flavor are no longer used
            for old in cache.parent.iterdir():
                if old != cache and old.is_dir():
                    import shutil

                    shutil.rmtree(old, ignore_errors=True)
    return path
