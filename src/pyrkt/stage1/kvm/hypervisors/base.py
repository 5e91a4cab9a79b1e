"""The face every hypervisor module offers: a pure `VmPlan -> argv` mapping.

A hypervisor module (qemu.py, lkvm.py) exposes a class implementing `Hypervisor`. It
starts nothing: the runner starts the command, so argv can be unit-tested without VMs.
"""

from __future__ import annotations

from typing import Protocol

from pyrkt.stage1.kvm.vm import VmPlan


class Hypervisor(Protocol):
    name: str

    def binary(self) -> str:
        """The executable (looked up on PATH by the runner)."""
        ...

    def argv(self, plan: VmPlan) -> list[str]:
        """The full command line (argv[0] included) that boots `plan`."""
        ...

    def supports_agent(self) -> bool:
        """Whether the plan's agent channel (enter/stop) is wired by argv()."""
        ...
