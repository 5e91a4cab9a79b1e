"""Which stage1 a pod gets when no `--stage1-*` flag is given, and where that comes from.

As rkt decided it (rkt's `getStage1DataFromConfig`), in order of precedence:

1. rkt's configuration, `stage1.d` in the config dirs: a `name` and `version` (as a
   pair) and a `location`, each overriding what the build chose;
2. the build's defaults, what `./configure` chose (`GlobalOptions.build`, carried by
   the `rkt` that `make` wrote): the default flavor's image beside that rkt, or a
   configured name, version and location;
3. a `rkt` that no configure made: our coreos flavor, built on demand.

`default_stage1` computes the choice without touching the image store, so that `rkt
version` and `rkt config` can say it, and `rkt run` acts on it (stage1img).

One difference from rkt, for the images built beside rkt: rkt looked name:version up in
its store first, except for development builds (a `-dirty` version), whose image could
differ under the same name. Our version names every commit's images alike, so these are
taken from the file beside rkt, and the store is asked only when the file is missing.

The kvm flavor built for several hypervisors has one image per hypervisor; the default
is the first (`--with-stage1-kvm-hypervisors=lkvm,qemu`: lkvm). A host without that
hypervisor's program gets the next built image whose hypervisor it has, with one line
saying so (`note`), instead of a pod that cannot start.
"""

from __future__ import annotations

import os
from pathlib import Path

from pyrkt import __version__
from pyrkt.builddefaults import SETUP_FLAVOR, BuildDefaults, BuiltImage
from pyrkt.options import GlobalOptions
from pyrkt.record import record

# The name of the flavor a rkt without ./configure builds on demand (stage1.build.aci).
ON_DEMAND_NAME = "coreos.com/rkt/stage1-coreos"
PROGRAM_HINT = {"lkvm": "lkvm (kvmtool)", "qemu-system-x86_64": "qemu-system-x86_64 (QEMU)"}


@record
class DefaultStage1:
    """The default stage1: looked up as `name:version`, else loaded from `location`
    (a URL or an absolute path), else from `file` (an image beside the built rkt)."""

    name: str
    version: str
    location: str = ""
    file: Path | None = None
    store_first: bool = True  # ask the store before location and file (rkt's order)
    on_demand: bool = False  # no configure, no config: the coreos flavor, built on demand
    source: str = ""  # where this choice comes from, for the user
    note: str = ""  # said once when a built image was passed over (its hypervisor)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}" if self.version else self.name

    @property
    def where(self) -> str:
        """Where the image comes from if the store does not have it."""
        if self.on_demand:
            return "built on demand (rkt stage1 build), cached under the data dir"
        return self.location or (str(self.file) if self.file else "")


def _has_program(image: BuiltImage) -> bool:
    if not image.program or image.bundled:
        return True
    from shutil import which

    return which(image.program) is not None


def pick_built_image(build: BuildDefaults) -> tuple[BuiltImage, str]:
    """The first image beside rkt whose hypervisor this host has (the default when
    none has), and the line to say when that is not the default."""
    default = build.images[0]
    if _has_program(default):
        return default, ""
    for other in build.images[1:]:
        if _has_program(other):
            missing = PROGRAM_HINT.get(default.program, default.program)
            return other, (
                f"{default.file} needs {missing}, which this host does not have: "
                f"using {other.file} ({other.hypervisor})"
            )
    return default, ""


def _configure_line(build: BuildDefaults) -> str:
    return "./configure" + (f" {build.configure}" if build.configure else "")


def _from_build(build: BuildDefaults) -> DefaultStage1:
    if not build.setup:
        return DefaultStage1(
            ON_DEMAND_NAME, __version__, on_demand=True,
            source="pyrkt's built-in default (this rkt was not built by ./configure && make)",
        )  # fmt: skip
    source = _configure_line(build)
    ours = build.setup == SETUP_FLAVOR and not build.location
    if ours and build.images and build.rkt_dir:
        image, note = pick_built_image(build)
        return DefaultStage1(
            build.name, image.version, file=Path(build.rkt_dir) / image.file,
            store_first=False, source=source, note=note,
        )  # fmt: skip
    file = None
    if build.images and build.rkt_dir:
        file = Path(build.rkt_dir) / build.images[0].file
    return DefaultStage1(
        build.name, build.version, location=build.location, file=file,
        store_first=build.setup != SETUP_FLAVOR, source=source,
    )  # fmt: skip


def _config_dirs_have_stage1(g: GlobalOptions) -> bool:
    return any(os.path.isdir(d / "stage1.d") for d in g.config_dirs)


def default_stage1(g: GlobalOptions) -> DefaultStage1:
    """The default stage1 of this rkt under its configuration (see the module docstring)."""
    built = _from_build(g.build)
    if not _config_dirs_have_stage1(g):
        return built  # the usual case: no config file to read
    from pyrkt.confdir import stage1_config

    conf = stage1_config(g.config_dirs)
    if not conf.name and not conf.location:
        return built
    sources = []
    name, version, file, store_first = built.name, built.version, built.file, built.store_first
    if conf.name:
        name, version, store_first = conf.name, conf.version, True
        sources.append(f"{conf.name_file} (name, version)")
    location = built.location
    if conf.location:
        location = conf.location
        sources.append(f"{conf.location_file} (location)")
        if not conf.name:
            version = g.build.version or version  # not the version of a stand-in image
        # rkt: an absolute location's file name is also looked for beside rkt
        file = (Path(g.build.rkt_dir) / Path(location).name
                if g.build.rkt_dir and location.startswith("/") else None)  # fmt: skip
    if not conf.name:
        if built.on_demand:
            name = version = ""  # no name to look up: only the configured location
        else:
            sources.append(f"{built.source} (name, version)")
    elif not conf.location and not built.on_demand:
        sources.append(f"{built.source} (location)")  # rkt: the build's, when none is set
    return DefaultStage1(
        name, version, location=location, file=file, store_first=store_first,
        on_demand=False, source=", ".join(sources),
        note=built.note if file is not None and file == built.file else "",
    )  # fmt: skip
