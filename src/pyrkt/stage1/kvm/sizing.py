"""The VM size for a pod, by the seed's rule (a pure function).

memory = sum of the apps' memory limits, an app without one counting 128 MiB, plus
128 MiB for the system; vCPUs = all host CPUs if at least one app has no CPU limit,
else the sum of the apps' CPU limits rounded up, never more than the host has, at
least 1.

A pod may override either with a pod annotation (rkt #1926: the VM size was not
settable from the pod): `coreos.com/rkt/stage1/kvm/memory` (a quantity as `--memory`
takes it: `512Mi`, `1Gi`; rounded up to MiB; at least 64 MiB and at least the sum of
the apps' memory limits, at most the host's memory) and `coreos.com/rkt/stage1/kvm/cpus` (an
integer from 1 to the host's CPUs). `rkt run --annotation=NAME=VALUE` sets them, or the pod
manifest does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pyrkt.appc.pod import ManifestError, parse_quantity
from pyrkt.errors import RktError
from pyrkt.record import record
from pyrkt.stage1.plan import AppPlan

MIB = 1024 * 1024
SYSTEM_MEMORY_MIB = 128
DEFAULT_APP_MEMORY_MIB = 128
MIN_MEMORY_MIB = 64
ANN_MEMORY = "coreos.com/rkt/stage1/kvm/memory"
ANN_CPUS = "coreos.com/rkt/stage1/kvm/cpus"


@record
class VmSize:
    memory_mib: int
    vcpus: int
    overridden: tuple[str, ...] = ()  # the annotations that set it

    def describe(self) -> str:
        return f"{self.vcpus} vCPU(s), {self.memory_mib} MiB"


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def vm_size(
    apps: Sequence[AppPlan],
    host_cpus: int,
    annotations: Mapping[str, str] | None = None,
    host_memory_mib: int | None = None,
) -> VmSize:
    """Size the VM for these apps on a host with host_cpus CPUs; the pod's annotations
    may override the memory (never more than host_memory_mib, when known) and the vCPUs
    (validated: RktError)."""
    rule = _rule_size(apps, host_cpus)
    ann = annotations or {}
    memory, vcpus, overridden = rule.memory_mib, rule.vcpus, []
    if ANN_MEMORY in ann:
        memory = _memory_override(ann[ANN_MEMORY], apps, host_memory_mib)
        overridden.append(ANN_MEMORY)
    if ANN_CPUS in ann:
        vcpus = _cpus_override(ann[ANN_CPUS], host_cpus)
        overridden.append(ANN_CPUS)
    return VmSize(memory_mib=memory, vcpus=vcpus, overridden=tuple(overridden))


def _memory_override(text: str, apps: Sequence[AppPlan], host_mib: int | None) -> int:
    where = f"annotation {ANN_MEMORY}={text!r}"
    try:
        memory = _ceil_div(parse_quantity(text), MIB)
    except ManifestError:
        raise RktError(f"{where}: not a quantity", "e.g. 512Mi or 2Gi") from None
    limits = _ceil_div(sum(a.memory_limit or 0 for a in apps), MIB)
    floor = max(MIN_MEMORY_MIB, limits)
    if memory < floor:
        why = (
            f"the apps' memory limits add up to {limits} MiB"
            if limits > MIN_MEMORY_MIB
            else (f"a VM needs at least {MIN_MEMORY_MIB} MiB")
        )
        raise RktError(f"{where}: {memory} MiB is too small ({why})", "e.g. 512Mi or 2Gi")
    if host_mib is not None and memory > host_mib:
        raise RktError(f"{where}: {memory} MiB is more than the host has ({host_mib} MiB)")
    return memory


def host_memory_mib() -> int | None:
    """The host's memory (MemTotal), None when /proc/meminfo cannot tell."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cpus_override(text: str, host_cpus: int) -> int:
    host = max(1, host_cpus)
    try:
        vcpus = int(text.strip())
    except ValueError:
        vcpus = 0
    if not 1 <= vcpus <= host:
        raise RktError(
            f"annotation {ANN_CPUS}={text!r}: expected a whole number of vCPUs "
            f"from 1 to {host} (the host's CPUs)"
        )
    return vcpus


def _rule_size(apps: Sequence[AppPlan], host_cpus: int) -> VmSize:
    """The seed's rule."""
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
