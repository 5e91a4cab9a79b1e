"""The face every hypervisor module offers: a pure `VmPlan -> argv` mapping.

A hypervisor module (qemu.py, lkvm.py) exposes a class implementing `Hypervisor`. It
starts nothing: the runner starts the command, so argv can be unit-tested without VMs.
"""

from __future__ import annotations

from pyrkt.stage1.kvm.vm import VmPlan

# not `from typing import Protocol` at run time: importing typing costs ~2 ms on every
# pod start, and the protocol only serves the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object


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
