"""Stage1 image manifests per flavor and hypervisor: what `rkt image list` and
`--stage1-name` see."""

from __future__ import annotations

from pyrkt import __version__
from pyrkt.stage1 import contract
from pyrkt.stage1.build.aci import Flavor, Hypervisor, builtin_image, stage1_manifest
from pyrkt.stage1.build.builder import parse_list


def _labels(m: dict[str, object]) -> dict[str, str]:
    return {x["name"]: x["value"] for x in m["labels"]}  # type: ignore[attr-defined]


def _anns(m: dict[str, object]) -> dict[str, str]:
    return {x["name"]: x["value"] for x in m["annotations"]}  # type: ignore[attr-defined]


def test_kvm_images_share_a_name_and_differ_by_version() -> None:
    qemu = stage1_manifest(Flavor.KVM, Hypervisor.QEMU)
    lkvm = stage1_manifest(Flavor.KVM, Hypervisor.LKVM)
    assert qemu["name"] == lkvm["name"] == "coreos.com/rkt/stage1-kvm"
    assert _labels(qemu)["version"] == f"{__version__}-qemu"
    assert _labels(lkvm)["version"] == f"{__version__}-lkvm"
    assert _anns(lkvm)[contract.ANN_HYPERVISOR] == "lkvm"
    assert _anns(lkvm)[contract.ANN_FLAVOR] == "kvm"


def test_container_flavors_have_plain_version_and_no_hypervisor() -> None:
    for flavor in (Flavor.COREOS, Flavor.FLY):
        m = stage1_manifest(flavor)
        assert _labels(m)["version"] == __version__
        assert contract.ANN_HYPERVISOR not in _anns(m)
        assert {contract.ANN_RUN, contract.ANN_ENTER, contract.ANN_STOP, contract.ANN_GC,
                contract.ANN_INTERFACE_VERSION} <= set(_anns(m))  # fmt: skip


def test_flavor_lists_accept_rkt_spellings() -> None:
    assert parse_list("--flavors", "kvm, container,kvm", Flavor) == (Flavor.KVM, Flavor.COREOS)
    assert parse_list("--hypervisors", "lkvm,qemu", Hypervisor) == (
        Hypervisor.LKVM,
        Hypervisor.QEMU,
    )


def test_builtin_names_map_to_flavor_and_hypervisor() -> None:
    kvm = "coreos.com/rkt/stage1-kvm"
    assert builtin_image("coreos.com/rkt/stage1-fly") == (Flavor.FLY, None)
    assert builtin_image(f"{kvm}:{__version__}") == (Flavor.KVM, None)
    assert builtin_image(f"{kvm}:{__version__}-lkvm") == (Flavor.KVM, Hypervisor.LKVM)
    assert builtin_image(f"{kvm}:9.9.9-qemu") is None
    assert builtin_image("coreos.com/rkt/stage1-xen") is None
    assert builtin_image("example.com/stage1-kvm") is None
