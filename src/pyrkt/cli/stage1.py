"""`rkt stage1 build`: build stage1 ACIs (flavors x hypervisors), as rkt's `make` did.

    rkt stage1 build [--flavors=coreos,fly,kvm] [--hypervisors=qemu,lkvm]
                     [--kernel=auto|distro|tailored|PATH] [--bundle-qemu] [--bundle-lkvm]
                     [--output DIR]
    rkt stage1 kernel [--print]     build (once per machine) the tailored guest kernel
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

from pyrkt.errors import UsageError
from pyrkt.options import GlobalOptions

USAGE = """Usage:
  rkt stage1 build [flags]
  rkt stage1 kernel

Build stage1 images: stage1-<flavor>.aci, and for kvm stage1-kvm.aci (one hypervisor)
or stage1-kvm-<hypervisor>.aci (several).

Flags (build):
      --flavors=coreos,fly,kvm   stage1 flavors to build
      --hypervisors=qemu         hypervisors of the kvm flavor (qemu, lkvm)
      --kernel=auto              guest kernel: auto (tailored if built, else distro),
                                 distro, tailored (built once per machine), or a path
      --bundle-qemu              carry QEMU, its libraries and firmware in the image
      --bundle-lkvm              carry the host's lkvm (kvmtool) in the lkvm image
      --output=build/target/bin  where the images are written
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, "see 'rkt stage1 --help'")


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rkt stage1 build", add_help=False)
    p.add_argument("--flavors", default="coreos,fly,kvm")
    p.add_argument("--hypervisors", default="qemu")
    p.add_argument("--kernel", default="auto")
    p.add_argument("--bundle-qemu", action="store_true")
    p.add_argument("--bundle-lkvm", action="store_true")
    p.add_argument("--output", default="build/target/bin")
    return p


def main(argv: list[str], g: GlobalOptions) -> int:
    args = argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    sub, rest = args[0], args[1:]
    if any(a in ("-h", "--help") for a in rest):
        print(USAGE, end="")
        return 0
    if sub == "build":
        return _build(rest)
    if sub == "kernel":
        return _kernel(rest)
    raise UsageError(f"unknown command {sub!r} for \"rkt stage1\"", "see 'rkt stage1 --help'")


def _build(rest: list[str]) -> int:
    from pyrkt.stage1.build import builder
    from pyrkt.stage1.build.aci import Flavor, Hypervisor

    ns = _build_parser().parse_args(rest)
    spec = builder.BuildSpec(
        flavors=builder.parse_list("--flavors", ns.flavors, Flavor),
        hypervisors=builder.parse_list("--hypervisors", ns.hypervisors, Hypervisor),
        kernel=ns.kernel,
        bundle_qemu=ns.bundle_qemu,
        bundle_lkvm=ns.bundle_lkvm,
        output=Path(ns.output),
    )
    for path in builder.build(spec):
        print(path)
    return 0


def _kernel(rest: list[str]) -> int:
    from pyrkt.stage1.build import kernel

    if rest:
        raise UsageError(f"unexpected arguments: {' '.join(rest)}")
    k = kernel.ensure_tailored_kernel()
    print(k.image)
    return 0
