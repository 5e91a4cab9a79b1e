"""The `rkt` command files: `.venv/bin/rkt` (scripts/setup.sh) and `build/target/bin/rkt`
(`make`), both Python without `site`.

pip's `.venv/bin/rkt` starts Python with `site`, which for a virtual environment reads
`pyvenv.cfg` and runs every `.pth` file in site-packages (one imports setuptools'
distutils shim): about 11 million instructions, 8% of a whole `rkt run`. These launchers
start Python with `-S` and put the site directories on `sys.path` themselves, with the
same `sys.prefix`. Everything `rkt` starts (a stage1 exec'd with `PYRKT_PYTHON`, helpers)
runs a normal Python with `site`.

The built tree's launcher (`--built`) also carries what ./configure chose for the default
stage1 (pyrkt.builddefaults, as rkt's configure compiled it into rkt) and runs this
source tree: its folder first on `sys.path`, and in `PYTHONPATH` for what rkt starts.
It finds the stage1 images `make` wrote in its own folder, from any working directory.

    python -m pyrkt.cli.launcher PATH                 # the venv's rkt (atomically)
    python -m pyrkt.cli.launcher PATH --module pyrkt.oci.cli   # the venv's rkt-runtime
    python -m pyrkt.cli.launcher --built PATH OPTS    # the built tree's rkt (make)
    python -m pyrkt.cli.launcher --check OPTS         # check configure's choices (configure)

OPTS: --flavors= --hypervisors= --bundle-qemu=yes|no --default-flavor= --default-name=
--default-version= --default-location= --images-dir= --configure= ("" = not given).
"""

from __future__ import annotations

import argparse
import os
import pprint
import site
import sys
from pathlib import Path
from typing import NoReturn

import pyrkt
from pyrkt.builddefaults import BuildDefaults

TEMPLATE = '''\
#!{python} -S
# pyrkt's `{name}`, written by `python -m pyrkt.cli.launcher` (scripts/setup.sh): Python
# without `site` (see pyrkt/cli/launcher.py), the same paths as pip's console script.
import sys
sys.prefix = sys.exec_prefix = {prefix!r}
sys.path += {paths!r}
from {module} import main
sys.exit(main())
'''
# The venv's commands by the module whose main() they run: `rkt-runtime` (the OCI
# runtime) is started several times per container by containerd's shim.
COMMANDS = {"pyrkt.cli.main": "rkt", "pyrkt.oci.cli": "rkt-runtime"}
DEFAULT_MODULE = "pyrkt.cli.main"

BUILT_TEMPLATE = '''\
#!{python} -S
# pyrkt's `rkt` for the source tree {source}, as `make` built it:
#   ./configure {configure}
# Written by `python -m pyrkt.cli.launcher --built`: Python without `site` (see
# pyrkt/cli/launcher.py). BUILD is the default stage1 that ./configure chose
# (pyrkt/builddefaults.py); the images it names are in this file's folder.
import os
import sys
sys.prefix = sys.exec_prefix = {prefix!r}
sys.path[:0] = [{source!r}]
sys.path += {paths!r}
os.environ["PYTHONPATH"] = {source!r}  # what rkt starts runs this tree too
BUILD = {build}
from pyrkt.cli.main import main
sys.exit(main(build=dict(BUILD, rkt_dir=os.path.dirname(os.path.realpath(__file__)))))
'''


def _source() -> str:
    return str(Path(pyrkt.__file__).resolve().parent.parent)


def _site_dirs() -> list[str]:
    """The directories `site` would add for this interpreter (no `.pth` files)."""
    return [d for d in site.getsitepackages() if os.path.isdir(d)]


def launcher_text(module: str = DEFAULT_MODULE) -> str:
    """The venv's launcher for this interpreter, environment and pyrkt (module.main)."""
    source = _source()
    paths = _site_dirs()
    if source not in paths:
        paths.append(source)  # the editable install's folder (pip adds it by a .pth)
    return TEMPLATE.format(python=sys.executable, prefix=sys.prefix, paths=paths,
                           module=module, name=COMMANDS[module])


def built_launcher_text(build: BuildDefaults) -> str:
    """The built tree's launcher: this interpreter, this source tree, build's defaults."""
    text = pprint.pformat(build.to_dict(), width=88, sort_dicts=False)
    return BUILT_TEMPLATE.format(
        python=sys.executable, prefix=sys.prefix, source=_source(), paths=_site_dirs(),
        configure=build.configure, build=text.replace("\n", "\n        "),
    )  # fmt: skip


def write(path: Path, text: str | None = None) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(launcher_text() if text is None else text)
    tmp.chmod(0o755)
    os.replace(tmp, path)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m pyrkt.cli.launcher")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--built", metavar="PATH")
    mode.add_argument("--check", action="store_true")
    p.add_argument("path", nargs="?")
    p.add_argument("--module", choices=sorted(COMMANDS), default=DEFAULT_MODULE)
    p.add_argument("--flavors", default="")
    p.add_argument("--hypervisors", default="qemu")
    p.add_argument("--bundle-qemu", choices=("yes", "no"), default="no")
    for opt in ("default-flavor", "default-name", "default-version", "default-location",
                "images-dir", "configure"):
        p.add_argument(f"--{opt}", default="")
    return p


def _defaults(ns: argparse.Namespace) -> BuildDefaults:
    from pyrkt.stage1.build.aci import Flavor, Hypervisor
    from pyrkt.stage1.build.builder import parse_list
    from pyrkt.stage1.build.defaults import build_defaults

    flavors = parse_list("--with-stage1-flavors", ns.flavors, Flavor) if ns.flavors else ()
    hvs = parse_list("--with-stage1-kvm-hypervisors", ns.hypervisors, Hypervisor)
    default_flavor = None
    if ns.default_flavor:
        default_flavor = parse_list("--with-stage1-default-flavor", ns.default_flavor, Flavor)[0]
    return build_defaults(
        flavors=flavors, hypervisors=hvs, default_flavor=default_flavor,
        name=ns.default_name, version=ns.default_version, location=ns.default_location,
        images_dir=ns.images_dir, bundle_qemu=ns.bundle_qemu == "yes",
        configure=ns.configure,
    )  # fmt: skip


def describe(b: BuildDefaults) -> str:
    """One line: the default stage1 and where the built rkt will look for it."""
    where = [b.location] if b.location else []
    if b.images:
        where.append(" or ".join(i.file for i in b.images) + " beside rkt")
    return f"default stage1 {b.name}:{b.version}" + (f" ({', '.join(where)})" if where else "")


def main(argv: list[str]) -> int:
    ns = _parser().parse_args(argv)
    if not ns.built and not ns.check:
        if ns.path is None:
            _parser().error("a PATH to write is needed")
        write(Path(ns.path), launcher_text(ns.module))
        return 0
    from pyrkt.errors import RktError

    try:
        b = _defaults(ns)
    except RktError as e:
        print(f"{e}", file=sys.stderr)
        return 1
    if ns.built:
        write(Path(ns.built), built_launcher_text(b))
        print(f"wrote {ns.built}: {describe(b)}")
    else:
        print(f"{b.setup} setup: {describe(b)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
