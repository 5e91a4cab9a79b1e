"""The VM size for a pod, by the seed's rule (a pure function).

memory = sum of the apps' memory limits, an app without one counting 128 MiB, plus
128 MiB for the system; vCPUs = all host CPUs if at least one app has no CPU limit,
else the sum of the apps' CPU limits rounded up, never more than the host has, at
least 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyrkt.stage1.plan import AppPlan

MIB = 1024 * 1024
SYSTEM_MEMORY_MIB = 128
DEFAULT_APP_MEMORY_MIB = 128


@dataclass(frozen=True)
class VmSize:
    memory_mib: int
    vcpus: int

    def describe(self) -> str:
        return f"{self.vcpus} vCPU(s), {self.memory_mib} MiB"


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def vm_size(apps: Sequence[AppPlan], host_cpus: int) -> VmSize:
    """Size the VM for these apps on a host with host_cpus CPUs."""
    memory = SYSTEM_MEMORY_MIB
    for app in apps:
        if app.memory_limit is None:
            memory += DEFAULT_APP_MEMORY_MIB
        else:
            memory += _ceil_div(app.memory_limit, MIB)
    host = max(1, host_cpus)
    if not apps or any(app.cpu_limit_milli is None for app in apps):
        vcpus = host
    else:
        total_milli = sum(app.cpu_limit_milli or 0 for app in apps)
        vcpus = _ceil_div(total_milli, 1000)
    return VmSize(memory_mib=memory, vcpus=max(1, min(vcpus, host)))
