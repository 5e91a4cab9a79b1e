"""What `./configure` chose for a built `rkt`: its default stage1 image.

rkt's configure compiled five values into the rkt binary (linker flags): the default
stage1 name, version and location, the image's file name in rkt's own folder, and the
stage1 images folder (`--stage1-from-dir`). `make` writes them into
`build/target/bin/rkt` (`pyrkt.cli.launcher --built`), which hands them to `main`; they
become `GlobalOptions.build`. A `rkt` that no configure made (`.venv/bin/rkt`,
`python -m pyrkt`) has `UNCONFIGURED`: its default is the coreos flavor built on demand.

For the kvm flavor built for several hypervisors, `images` lists every image of the
default flavor in configure's order: the first is the default, the others stand in when
the host lacks its hypervisor (pyrkt.stage0.stage1default).
"""

from __future__ import annotations

from pyrkt.record import record

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SETUP_FLAVOR = "flavor"  # --with-stage1-default-flavor (or the first built flavor)
SETUP_DETAILED = "detailed"  # --with-stage1-default-name and -version


@record
class BuiltImage:
    """One stage1 image that `make` wrote beside rkt."""

    file: str  # its file name in rkt's folder
    version: str  # its version label
    hypervisor: str = ""  # kvm images: the hypervisor it drives
    program: str = ""  # that hypervisor's program, looked up on the PATH at run time
    bundled: bool = False  # the image carries the program itself


@record
class BuildDefaults:
    """The default stage1 of this rkt (see the module docstring); "" where unset."""

    setup: str = ""  # SETUP_FLAVOR, SETUP_DETAILED, or "" (no configure)
    name: str = ""
    version: str = ""
    location: str = ""  # a URL or an absolute path
    images: tuple[BuiltImage, ...] = ()  # beside rkt: the default first
    images_dir: str = ""  # --stage1-from-dir's folder ("": SYSTEM_CONFIG/stage1-images)
    rkt_dir: str = ""  # the folder of the built rkt (found at run time)
    configure: str = ""  # the configure arguments, to say where the default comes from

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildDefaults:
        """From the plain dict the built launcher carries (see `to_dict`)."""
        images = tuple(BuiltImage(**i) for i in d.get("images", ()))
        return cls(**{**d, "images": images})

    def to_dict(self) -> dict[str, Any]:
        from pyrkt.record import asdict

        return asdict(self)


UNCONFIGURED = BuildDefaults()
