"""The VM size override by pod annotations (rkt #1926): the seed's rule by default,
`coreos.com/rkt/stage1/kvm/{memory,cpus}` for one pod, validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyrkt.errors import RktError
from pyrkt.record import replace
from pyrkt.stage1.kvm.sizing import ANN_CPUS, ANN_MEMORY, vm_size
from pyrkt.stage1.plan import AppPlan

MIB = 1024 * 1024


def app(**kw: object) -> AppPlan:
    base = AppPlan(name="a", rootfs=Path("/x"), argv=("/bin/true",), env=(("PATH", "/bin"),))
    return replace(base, **kw)


def test_without_annotations_the_rule_applies() -> None:
    s = vm_size([app()], host_cpus=4, annotations={"other": "x"})
    assert (s.memory_mib, s.vcpus, s.overridden) == (256, 4, ())


def test_memory_and_cpus_set_by_annotations() -> None:
    s = vm_size([app(), app(name="b")], host_cpus=4,
                annotations={ANN_MEMORY: "1Gi", ANN_CPUS: "2"})
    assert (s.memory_mib, s.vcpus) == (1024, 2)
    assert s.overridden == (ANN_MEMORY, ANN_CPUS)


def test_one_override_keeps_the_rule_for_the_other() -> None:
    s = vm_size([app(memory_limit=64 * MIB, cpu_limit_milli=1500)], host_cpus=8,
                annotations={ANN_CPUS: "1"})
    assert (s.memory_mib, s.vcpus) == (128 + 64, 1)
    s = vm_size([app(cpu_limit_milli=1500)], host_cpus=8, annotations={ANN_MEMORY: "300M"})
    assert (s.memory_mib, s.vcpus) == (287, 2)  # 300 MB rounded up to MiB


@pytest.mark.parametrize("value", ["32Mi", "64", "lots", "-1Gi"])
def test_memory_too_small_or_not_a_quantity_is_refused(value: str) -> None:
    with pytest.raises(RktError, match=ANN_MEMORY):
        vm_size([app()], host_cpus=2, annotations={ANN_MEMORY: value})


def test_memory_below_the_apps_limits_is_refused() -> None:
    with pytest.raises(RktError, match="limits add up to 512 MiB"):
        vm_size([app(memory_limit=512 * MIB)], host_cpus=2, annotations={ANN_MEMORY: "256Mi"})
    assert vm_size([app(memory_limit=512 * MIB)], host_cpus=2,
                   annotations={ANN_MEMORY: "512Mi"}).memory_mib == 512


@pytest.mark.parametrize("value", ["0", "5", "1.5", "two", ""])
def test_cpus_outside_one_to_host_are_refused(value: str) -> None:
    with pytest.raises(RktError, match=r"from 1 to 4"):
        vm_size([app()], host_cpus=4, annotations={ANN_CPUS: value})


# ---- the apps' logs (rkt #2664): QEMU copies each output port into a file ------------


def test_qemu_copies_the_apps_output_into_log_files() -> None:
    from pyrkt.stage1.kvm.hypervisors.qemu import Qemu
    from pyrkt.stage1.kvm.vm import Accel, VmPlan

    base = VmPlan(kernel=Path("/k"), initrd=Path("/i"), cmdline=("quiet",), vcpus=1,
                  memory_mib=256, accel=Accel.TCG, app_stdout=Path("/dev/fdset/1"),
                  app_stderr=Path("/dev/fdset/2"))
    chardevs = " ".join(Qemu().argv(replace(base, app_log_dir=Path("logs"))))
    assert "id=out,path=/dev/fdset/1,append=on,logfile=logs/stdout.log,logappend=on" in chardevs
    assert "id=err,path=/dev/fdset/2,append=on,logfile=logs/stderr.log,logappend=on" in chardevs
    assert "logfile=logs" not in " ".join(Qemu().argv(base))


def test_memory_more_than_the_host_has_is_refused() -> None:
    with pytest.raises(RktError, match=r"more than the host has \(1024 MiB\)"):
        vm_size([app()], host_cpus=2, annotations={ANN_MEMORY: "2Gi"}, host_memory_mib=1024)
    assert vm_size([app()], host_cpus=2, annotations={ANN_MEMORY: "1Gi"},
                   host_memory_mib=1024).memory_mib == 1024
