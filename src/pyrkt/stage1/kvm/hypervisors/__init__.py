"""Hypervisors the kvm flavor can drive: each turns a `VmPlan` into a command line."""

from __future__ import annotations

import enum
import importlib

from pyrkt.errors import RktError
from pyrkt.stage1.kvm.hypervisors.base import Hypervisor


class HypervisorName(enum.StrEnum):
    QEMU = "qemu"
    LKVM = "lkvm"


def get(name: str) -> Hypervisor:
    """The hypervisor called `name` (the stage1 image's hypervisor annotation)."""
    if name == HypervisorName.QEMU:
        from pyrkt.stage1.kvm.hypervisors.qemu import Qemu

        return Qemu()
    if name == HypervisorName.LKVM:
        try:
            mod = importlib.import_module("pyrkt.stage1.kvm.hypervisors.lkvm")
        except ImportError as e:
            raise RktError("hypervisor lkvm is not available in this build") from e
        hv: Hypervisor = mod.Lkvm()
        return hv
    raise RktError(f"unknown hypervisor {name!r}", "known: qemu, lkvm")
