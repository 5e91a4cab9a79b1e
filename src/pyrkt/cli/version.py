"""`rkt version`."""

from __future__ import annotations

import platform

from pyrkt import APPC_SPEC_VERSION, __version__
from pyrkt.options import GlobalOptions
from pyrkt.stage1.contract import INTERFACE_VERSION


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
    return 0
