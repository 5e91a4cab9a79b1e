"""The default stage1 a configured build gives its `rkt`, from `./configure`'s choices.

rkt's configure had two ways to name the default (Documentation/build-configure.md):
- flavor setup (`--with-stage1-default-flavor`, by default the first flavor of
  `--with-stage1-flavors`): the name is `coreos.com/rkt/stage1-<flavor>`, the version
  the images' version, and the image is the file `make` writes beside rkt;
- detailed setup (`--with-stage1-default-name` and `--with-stage1-default-version`
  together): a stage1 of someone else's, found in the store or at the location.
`--with-stage1-default-location` (a URL or an absolute path) says where to load it from
when the store does not have it; `--with-stage1-default-images-directory` is where
`--stage1-from-dir` looks.

Ours names the kvm images per hypervisor (`stage1-kvm-lkvm.aci`, `stage1-kvm-qemu.aci`,
versions `0.1.0-lkvm`, `0.1.0-qemu`); for the kvm default flavor every one of them is
listed, the first hypervisor's first (pyrkt.stage0.stage1default picks among them).
"""

from __future__ import annotations

from pathlib import Path

from pyrkt.builddefaults import SETUP_DETAILED, SETUP_FLAVOR, BuildDefaults, BuiltImage
from pyrkt.errors import UsageError
from pyrkt.stage1.build.aci import Flavor, Hypervisor, aci_filename, image_name, image_version

LOCATION_SCHEMES = ("docker://", "https://", "http://", "file://")


def _program(hv: Hypervisor) -> str:
    from pyrkt.stage1.kvm import hypervisors

    return hypervisors.get(hv.value).binary()


def built_images(
    flavor: Flavor, hypervisors: tuple[Hypervisor, ...], *, bundle_qemu: bool
) -> tuple[BuiltImage, ...]:
    """The images `make` writes for one flavor, in configure's order."""
    if flavor is not Flavor.KVM:
        return (BuiltImage(aci_filename(flavor), image_version()),)
    several = len(hypervisors) > 1
    return tuple(
        BuiltImage(
            aci_filename(flavor, hv, several=several), image_version(hv), hypervisor=hv.value,
            program=_program(hv), bundled=bundle_qemu and hv is Hypervisor.QEMU,
        )
        for hv in hypervisors
    )


def build_defaults(
    *,
    flavors: tuple[Flavor, ...],
    hypervisors: tuple[Hypervisor, ...],
    default_flavor: Flavor | None = None,
    name: str = "",
    version: str = "",
    location: str = "",
    images_dir: str = "",
    bundle_qemu: bool = False,
    configure: str = "",
) -> BuildDefaults:
    """What the built rkt uses without a `--stage1-*` flag; configure's rules checked."""
    if default_flavor is not None and (name or version):
        raise UsageError(
            "--with-stage1-default-flavor and --with-stage1-default-{name,version} "
            "are mutually exclusive"
        )
    if bool(name) != bool(version):
        raise UsageError("--with-stage1-default-name and --with-stage1-default-version "
                         "go together")  # fmt: skip
    if location and not location.startswith("/") and not location.startswith(LOCATION_SCHEMES):
        raise UsageError(
            f"--with-stage1-default-location={location}: neither an absolute path nor a "
            "docker://, https://, http:// or file:// URL"
        )
    if images_dir and not images_dir.startswith("/"):
        raise UsageError(f"--with-stage1-default-images-directory={images_dir}: not absolute")
    if name:
        return BuildDefaults(SETUP_DETAILED, name, version, location,
                             _beside(location, version), images_dir, configure=configure)
    if not flavors:
        raise UsageError("no stage1 flavor to build, and no default stage1 name and version")
    flavor = default_flavor or flavors[0]
    if flavor not in flavors:
        raise UsageError(
            f"--with-stage1-default-flavor={flavor.value}: not one of the flavors built "
            f"(--with-stage1-flavors={','.join(f.value for f in flavors)})"
        )
    images = built_images(flavor, hypervisors, bundle_qemu=bundle_qemu)
    version = images[0].version
    return BuildDefaults(
        SETUP_FLAVOR, image_name(flavor), version, location,
        _beside(location, version) if location else images, images_dir, configure=configure,
    )  # fmt: skip


def _beside(location: str, version: str) -> tuple[BuiltImage, ...]:
    """rkt: the file name of an absolute location is also looked for beside rkt."""
    return (BuiltImage(Path(location).name, version),) if location.startswith("/") else ()
