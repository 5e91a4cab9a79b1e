"""Build a set of stage1 ACIs: every requested flavor, and per hypervisor for kvm.

This is what `rkt stage1 build` and `make` run. The generic ACI writer is
`aci.build_stage1_aci`; this module chooses the guest kernel, fills the kvm flavor's
rootfs (kernel + initramfs from the kvm flavor, the bundled QEMU from `bundle`) and
names the outputs as the seed does (one hypervisor: `stage1-kvm.aci`; several:
`stage1-kvm-<hypervisor>.aci`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pyrkt import log
from pyrkt.errors import RktError, UsageError
from pyrkt.stage1.build import bundle, kernel
from pyrkt.stage1.build.aci import ENTRYPOINTS, Flavor, Hypervisor, build_stage1_aci

# Written into a kvm stage1 rootfs: how it was built (kernel kind, bundled hypervisor).
BUILD_INFO = "kvm/build-info.json"
E = TypeVar("E", Flavor, Hypervisor)
KERNEL_AUTO = "auto"  # tailored when already built on this machine, else distro


@dataclass(frozen=True)
class BuildSpec:
    flavors: tuple[Flavor, ...]
    hypervisors: tuple[Hypervisor, ...] = (Hypervisor.QEMU,)
    kernel: str = KERNEL_AUTO  # auto | distro | tailored | PATH
    bundle_qemu: bool = False
    bundle_lkvm: bool = False
    output: Path = Path("build/target/bin")


def parse_list(flag: str, value: str, kind: type[E]) -> tuple[E, ...]:
    """'kvm,fly' -> (Flavor.KVM, Flavor.FLY); unknown names and empty lists rejected."""
    out: list[E] = []
    for raw in value.split(","):
        name = raw.strip()
        if not name:
            continue
        if name == "container" and kind is Flavor:
            name = Flavor.COREOS.value  # the name rkt's docs also use for coreos
        try:
            item = kind(name)
        except ValueError:
            valid = ", ".join(e.value for e in kind)
            raise UsageError(f"invalid value {name!r} for {flag}", f"valid: {valid}") from None
        if item not in out:
            out.append(item)
    if not out:
        raise UsageError(f"{flag} needs at least one value")
    return tuple(out)


def choose_kernel(spec: str) -> kernel.GuestKernel:
    if spec == KERNEL_AUTO:
        k = kernel.cached_tailored_kernel()
        if k is not None:
            return k
        log.info("tailored guest kernel not built on this machine: using the distro kernel")
        return kernel.distro_kernel()
    return kernel.resolve_kernel(spec)


def kvm_populate(
    guest: kernel.GuestKernel,
    hypervisor: Hypervisor,
    *,
    bundle_qemu: bool,
    bundle_lkvm: bool = False,
) -> Callable[[Path], None]:
    """The rootfs filler of one kvm stage1 image."""

    def populate(rootfs: Path) -> None:
        try:
            from pyrkt.stage1.kvm import assets
        except ImportError as e:
            raise RktError("the kvm flavor's assets are missing from this source tree") from e
        assets.populate_stage1_rootfs(rootfs, kernel=guest.image)
        bundled = None
        if bundle_qemu and hypervisor is Hypervisor.QEMU:
            bundled = bundle.bundle_qemu(rootfs).relative_to(rootfs)
        if bundle_lkvm and hypervisor is Hypervisor.LKVM:
            lkvm = shutil.which("lkvm")
            if lkvm is None:
                raise RktError("--bundle-lkvm: no lkvm (kvmtool) binary on the PATH")
            bundled = bundle.bundle_program(rootfs, Path(lkvm), "lkvm").relative_to(rootfs)
        if bundled is not None:
            for verb in ENTRYPOINTS:
                script = rootfs / verb
                script.write_text(bundle.entrypoint_with_bundle(script.read_text()))
        info = {
            "kernel": guest.kind,
            "kernel-release": guest.release,
            "hypervisor": hypervisor.value,
            "bundled-hypervisor": f"/{bundled}" if bundled else None,
        }
        (rootfs / BUILD_INFO).write_text(json.dumps(info, indent=1) + "\n")

    return populate


def build(spec: BuildSpec, progress: Callable[[str], None] | None = None) -> list[Path]:
    """Build every image of spec into spec.output; return their paths in build order."""
    say = progress or log.info
    if spec.bundle_qemu and Hypervisor.QEMU in spec.hypervisors and not shutil.which(
        bundle.QEMU_BINARY
    ):
        raise RktError(f"--bundle-qemu: {bundle.QEMU_BINARY} not found on PATH")
    if spec.bundle_lkvm and Hypervisor.LKVM in spec.hypervisors and not shutil.which("lkvm"):
        raise RktError("--bundle-lkvm: no lkvm (kvmtool) binary on the PATH")
    guest = choose_kernel(spec.kernel) if Flavor.KVM in spec.flavors else None
    several = len(spec.hypervisors) > 1
    built: list[Path] = []
    for flavor in spec.flavors:
        if flavor is not Flavor.KVM:
            say(f"building stage1 flavor {flavor.value}")
            built.append(build_stage1_aci(flavor, spec.output))
            continue
        assert guest is not None
        for hv in spec.hypervisors:
            say(f"building stage1 flavor kvm for {hv.value} ({guest.kind} kernel {guest.image})")
            fill = kvm_populate(
                guest, hv, bundle_qemu=spec.bundle_qemu, bundle_lkvm=spec.bundle_lkvm
            )
            built.append(
                build_stage1_aci(flavor, spec.output, hv, several=several, populate=fill)
            )
    return built
