"""The `rkt` command file that `scripts/setup.sh` writes over pip's console script.

pip's `.venv/bin/rkt` starts Python with `site`, which for a virtual environment reads
`pyvenv.cfg` and runs every `.pth` file in site-packages (one imports setuptools'
distutils shim): about 11 million instructions, 8% of a whole `rkt run`. This launcher
starts Python with `-S` and puts the same directories on `sys.path` in the same order
(site-packages, then the source folder of an editable install), and the same
`sys.prefix`. Everything `rkt` starts (a stage1 exec'd with `PYRKT_PYTHON`, helpers)
runs a normal Python with `site`.

    python -m pyrkt.cli.launcher PATH [MODULE]   # write the launcher to PATH (atomically)

MODULE (default `pyrkt.cli.main`) is the module whose `main()` the command runs:
`pyrkt.oci.cli` for `rkt-runtime`, which containerd's shim starts several times per
container.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import pyrkt

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


DEFAULT_MODULE = "pyrkt.cli.main"
COMMANDS = {"pyrkt.cli.main": "rkt", "pyrkt.oci.cli": "rkt-runtime"}


def launcher_text(module: str = DEFAULT_MODULE) -> str:
    """The launcher for this interpreter, environment and pyrkt, running module.main."""
    source = str(Path(pyrkt.__file__).resolve().parent.parent)
    site_packages = sysconfig.get_path("purelib")
    paths = [site_packages]
    platlib = sysconfig.get_path("platlib")
    if platlib != site_packages:
        paths.append(platlib)
    if source not in paths:
        paths.append(source)  # the editable install's folder (pip adds it by a .pth)
    return TEMPLATE.format(python=sys.executable, prefix=sys.prefix, paths=paths,
                           module=module, name=COMMANDS.get(module, module))


def write(path: Path, module: str = DEFAULT_MODULE) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(launcher_text(module))
    tmp.chmod(0o755)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or (len(argv) == 2 and argv[1] not in COMMANDS):
        print("usage: python -m pyrkt.cli.launcher PATH [" + "|".join(COMMANDS) + "]",
              file=sys.stderr)
        return 2
    write(Path(argv[0]), *argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
