"""The default stage1: what ./configure makes of its options (rkt's flavor and detailed
setups), and what a built rkt picks at run time (the hypervisor it has, stage1.d)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pyrkt import __version__
from pyrkt.builddefaults import BuildDefaults
from pyrkt.errors import RktError, UsageError
from pyrkt.options import GlobalOptions
from pyrkt.stage0.stage1default import default_stage1
from pyrkt.stage1.build.aci import Flavor, Hypervisor
from pyrkt.stage1.build.defaults import build_defaults

KVM, COREOS, FLY = Flavor.KVM, Flavor.COREOS, Flavor.FLY
LKVM, QEMU = Hypervisor.LKVM, Hypervisor.QEMU
SEED = {"flavors": (KVM,), "hypervisors": (LKVM, QEMU), "bundle_qemu": True}


def test_seed_build_defaults_to_the_first_hypervisors_kvm_image() -> None:
    b = build_defaults(**SEED)  # type: ignore[arg-type]
    assert (b.setup, b.name, b.version) == ("flavor", "coreos.com/rkt/stage1-kvm",
                                            f"{__version__}-lkvm")  # fmt: skip
    assert [(i.file, i.version, i.program, i.bundled) for i in b.images] == [
        ("stage1-kvm-lkvm.aci", f"{__version__}-lkvm", "lkvm", False),
        ("stage1-kvm-qemu.aci", f"{__version__}-qemu", "qemu-system-x86_64", True),
    ]


def test_first_flavor_is_the_default_unless_one_is_named() -> None:
    b = build_defaults(flavors=(COREOS, KVM), hypervisors=(QEMU,))
    assert (b.name, b.version) == ("coreos.com/rkt/stage1-coreos", __version__)
    assert [i.file for i in b.images] == ["stage1-coreos.aci"]
    b = build_defaults(flavors=(COREOS, KVM), hypervisors=(QEMU,), default_flavor=KVM)
    assert (b.name, b.version) == ("coreos.com/rkt/stage1-kvm", f"{__version__}-qemu")
    assert [i.file for i in b.images] == ["stage1-kvm.aci"]  # one hypervisor: the seed's name


def test_detailed_setup_and_location() -> None:
    b = build_defaults(flavors=(), hypervisors=(QEMU,), name="example.com/s1", version="2",
                       location="/usr/lib/rkt/stage1-images/s1.aci")  # fmt: skip
    assert (b.setup, b.name, b.version) == ("detailed", "example.com/s1", "2")
    assert [i.file for i in b.images] == ["s1.aci"]  # rkt: also looked for beside rkt
    b = build_defaults(flavors=(FLY,), hypervisors=(QEMU,), location="https://e.com/s.aci")
    assert (b.name, b.location, b.images) == ("coreos.com/rkt/stage1-fly",
                                              "https://e.com/s.aci", ())  # fmt: skip


@pytest.mark.parametrize(("kw", "says"), [
    ({"default_flavor": FLY}, "not one of the flavors built"),
    ({"default_flavor": KVM, "name": "a", "version": "1"}, "mutually exclusive"),
    ({"name": "a"}, "go together"),
    ({"location": "stage1.aci"}, "neither an absolute path nor"),
    ({"images_dir": "images"}, "not absolute"),
])  # fmt: skip
def test_configure_rules(kw: dict[str, object], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        build_defaults(flavors=(KVM,), hypervisors=(QEMU,), **kw)  # type: ignore[arg-type]


def _built(tmp_path: Path, **kw: object) -> GlobalOptions:
    b = build_defaults(**{**SEED, **kw}, configure="--seed")  # type: ignore[arg-type]
    rkt_dir = tmp_path / "bin"
    rkt_dir.mkdir(exist_ok=True)
    return GlobalOptions(dir=tmp_path / "data", system_config=tmp_path / "sys",
                         local_config=tmp_path / "local", user_config=None,
                         build=BuildDefaults.from_dict({**b.to_dict(), "rkt_dir": str(rkt_dir)}))


def _path_with(tmp_path: Path, *programs: str) -> str:
    d = tmp_path / "path"
    d.mkdir(exist_ok=True)
    for p in programs:
        (d / p).write_text("#!/bin/sh\n")
        (d / p).chmod(0o755)
    return str(d)


def test_a_host_without_lkvm_gets_the_qemu_image_and_is_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = _built(tmp_path)
    monkeypatch.setenv("PATH", _path_with(tmp_path))
    d = default_stage1(g)
    assert d.ref == f"coreos.com/rkt/stage1-kvm:{__version__}-qemu"
    assert d.file == tmp_path / "bin" / "stage1-kvm-qemu.aci"
    assert not d.store_first  # the build's own image, not a same-named one in the store
    assert d.note == ("stage1-kvm-lkvm.aci needs lkvm (kvmtool), which this host does not "
                      "have: using stage1-kvm-qemu.aci (qemu)")  # fmt: skip
    assert d.source == "./configure --seed"


def test_a_host_with_lkvm_keeps_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = _built(tmp_path)
    monkeypatch.setenv("PATH", _path_with(tmp_path, "lkvm"))
    d = default_stage1(g)
    assert (d.file, d.note) == (tmp_path / "bin" / "stage1-kvm-lkvm.aci", "")


def test_no_hypervisor_at_all_keeps_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = _built(tmp_path, bundle_qemu=False)  # the qemu image needs the host's QEMU too
    monkeypatch.setenv("PATH", _path_with(tmp_path))
    d = default_stage1(g)
    assert (d.file, d.note) == (tmp_path / "bin" / "stage1-kvm-lkvm.aci", "")


def _stage1_conf(g: GlobalOptions, **entry: str) -> Path:
    f = g.local_config / "stage1.d" / "s.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"rktKind": "stage1", "rktVersion": "v1", **entry}))
    return f


def test_stage1_d_overrides_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = _built(tmp_path)
    monkeypatch.setenv("PATH", _path_with(tmp_path))
    f = _stage1_conf(g, name="example.com/s1", version="3")
    d = default_stage1(g)
    assert (d.ref, d.store_first) == ("example.com/s1:3", True)
    # rkt: without a configured location, the build's own is the fallback
    assert (d.location, d.file) == ("", tmp_path / "bin" / "stage1-kvm-qemu.aci")
    assert d.source == f"{f} (name, version), ./configure --seed (location)"
    f = _stage1_conf(g, location="/opt/stage1-coreos.aci")
    d = default_stage1(g)
    assert d.ref == f"coreos.com/rkt/stage1-kvm:{__version__}-lkvm"  # the build's pair
    assert (d.location, d.file) == ("/opt/stage1-coreos.aci",
                                    tmp_path / "bin" / "stage1-coreos.aci")  # fmt: skip
    assert d.source == f"{f} (location), ./configure --seed (name, version)"


def test_unconfigured_rkt_builds_the_coreos_flavor_on_demand(tmp_path: Path) -> None:
    g = GlobalOptions(local_config=tmp_path / "l", system_config=tmp_path / "s")
    d = default_stage1(g)
    assert d.on_demand and d.ref == f"coreos.com/rkt/stage1-coreos:{__version__}"
    f = _stage1_conf(g, location="/opt/s.aci")
    d = default_stage1(g)
    assert (d.on_demand, d.ref, d.location) == (False, "", "/opt/s.aci")
    assert d.source == f"{f} (location)"


def test_configure_check_says_what_is_wrong() -> None:
    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pyrkt.cli.launcher", "--check", *args],
                              capture_output=True, text=True, check=False)  # fmt: skip

    ok = check("--flavors=kvm", "--hypervisors=lkvm,qemu", "--bundle-qemu=yes")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == (
        f"flavor setup: default stage1 coreos.com/rkt/stage1-kvm:{__version__}-lkvm "
        "(stage1-kvm-lkvm.aci or stage1-kvm-qemu.aci beside rkt)"
    )
    bad = check("--flavors=coreos,kvm", "--default-flavor=fly")
    assert bad.returncode == 1
    assert "--with-stage1-default-flavor=fly: not one of the flavors built" in bad.stderr


def test_the_built_image_is_taken_and_a_missing_one_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyrkt.image.store import Store
    from pyrkt.stage0.stage1img import Stage1Flags, select_stage1
    from pyrkt.stage1.build.aci import build_stage1_aci

    g = _built(tmp_path, flavors=(FLY, KVM), hypervisors=(QEMU,))
    store = Store(g.dir)
    with pytest.raises(RktError) as e:
        select_stage1(g, Stage1Flags(), store)
    assert str(e.value) == (
        f"default stage1 image coreos.com/rkt/stage1-fly:{__version__} is not in the store, "
        f"and there is no {tmp_path / 'bin' / 'stage1-fly.aci'} "
        "(use one of the --stage1-{path,url,name,hash,from-dir} flags)"
    )
    build_stage1_aci(FLY, tmp_path / "bin")  # what make writes beside rkt
    s1 = select_stage1(g, Stage1Flags(), store)
    assert s1.manifest["name"] == "coreos.com/rkt/stage1-fly"
