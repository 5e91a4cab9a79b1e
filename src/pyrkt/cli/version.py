"""`rkt version`: rkt's lines, then which stage1 is the default and where it comes from."""

from __future__ import annotations

import platform

from pyrkt import APPC_SPEC_VERSION, __version__
from pyrkt.errors import RktError
from pyrkt.options import GlobalOptions
from pyrkt.stage1.contract import INTERFACE_VERSION


def stage1_lines(g: GlobalOptions) -> list[str]:
    """The default stage1 (pyrkt.stage0.stage1default); a broken config file is said,
    not fatal: `rkt version` must always answer."""
    from pyrkt.stage0.stage1default import default_stage1

    try:
        d = default_stage1(g)
    except RktError as e:
        return [f"Default stage1 image: unknown: {e}"]
    lines = [
        f"Default stage1 image: {d.ref}",
        f"Default stage1 location: {d.where}",
        f"Default stage1 from: {d.source}",
    ]
    if d.note:
        lines.append(f"Default stage1 note: {d.note}")
    return lines


def main(argv: list[str], g: GlobalOptions) -> int:
    if any(a in ("-h", "--help") for a in argv[1:]):
        print("Usage: rkt version")
        return 0
    print(f"rkt Version: {__version__}")
    print(f"appc Version: {APPC_SPEC_VERSION}")
    print(f"Go Version: python{platform.python_version()}")
    print(f"Go OS/Arch: {platform.system().lower()}/{platform.machine()}")
    print("Features: -TPM +SDJOURNAL")
    print(f"Stage1 interface version: {INTERFACE_VERSION}")
    for line in stage1_lines(g):
        print(line)
    return 0
