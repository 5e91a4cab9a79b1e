"""The suite that mirrors rkt's functional tests (`tests/rkt_*_test.go` in rkt/rkt), one
module per rkt test file; `docs/rkt-compat.md` maps each rkt test to ours.

Fixtures:
    flavor        "coreos" or "kvm": tests that rkt ran under kvm too are parametrized over
                  both (`FLAVORS`); the kvm ones boot real VMs (QEMU, TCG here).
    stage1s       the two stage1 ACIs, built once per session
    rkt           Rkt: the `rkt` command with its own --dir, the flavor's stage1, and
                  clean-up (gc, QEMU kill) after the test
    make_image    make_image(name, app=..., files=..., **manifest) -> an ACI: busybox with
                  `files` added, the manifest's `app` section as given

What a failing kvm test prints: the serial log and QEMU command line of every pod.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from rktcompat import FLAVORS, ImageMaker, Rkt

from support.images import busybox_rootfs, write_aci


@pytest.fixture(scope="session")
def stage1s(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Built lazily: a coreos-only run never builds the kvm image."""
    from pyrkt.stage1.build.aci import Flavor, Hypervisor, build_stage1_aci

    class Lazy(dict[str, Path]):
        def __missing__(self, flavor: str) -> Path:
            out = tmp_path_factory.mktemp(f"stage1-{flavor}")
            hv = Hypervisor.QEMU if flavor == "kvm" else None
            self[flavor] = build_stage1_aci(Flavor(flavor), out, hv)
            return self[flavor]

    return Lazy()


@pytest.fixture(scope="session")
def base_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture
def make_image(tmp_path: Path, base_rootfs: Path) -> ImageMaker:
    """make_image(name, app={...} | None, files={path: text | None (a folder)},
    links={path: target}, labels=[...] | None (version/os/arch), executable=(paths of
    files to chmod 755), **more manifest keys)."""
    count = [0]

    def make(name: str = "example.com/busybox", *, app: Mapping[str, object] | None = None,
             files: Mapping[str, str | None] | None = None,
             links: Mapping[str, str] | None = None,
             labels: list[dict[str, str]] | None = None,
             executable: tuple[str, ...] = (), **extra: object) -> Path:
        count[0] += 1
        work = tmp_path / f"image-{count[0]}"
        work.mkdir()
        subprocess.run(["cp", "-a", str(base_rootfs), str(work / "rootfs")], check=True)
        for path, text in (files or {}).items():
            p = work / "rootfs" / path.lstrip("/")
            if text is None:
                p.mkdir(parents=True, exist_ok=True)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text)
        for path in executable:
            (work / "rootfs" / path.lstrip("/")).chmod(0o755)
        for path, target in (links or {}).items():
            p = work / "rootfs" / path.lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.symlink_to(target)
        manifest: dict[str, object] = {
            "acKind": "ImageManifest", "acVersion": "0.8.11", "name": name,
            "labels": labels if labels is not None else [
                {"name": "version", "value": "1.0"}, {"name": "os", "value": "linux"},
                {"name": "arch", "value": "amd64"}],
        }  # fmt: skip
        if app is not None:
            manifest["app"] = {"user": "0", "group": "0", **app}
        manifest.update(extra)
        return write_aci(work, json.dumps(manifest), f"{name.rsplit('/', 1)[-1]}.aci")

    return make


@pytest.fixture(params=FLAVORS)
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def rkt(request: pytest.FixtureRequest, tmp_path: Path,
        stage1s: dict[str, Path]) -> Iterator[Rkt]:
    """The `rkt` command for the test's flavor (coreos when the test has none)."""
    fl = request.getfixturevalue("flavor") if "flavor" in request.fixturenames else "coreos"
    r = Rkt(tmp_path / "rkt", fl, lambda: stage1s[fl])
    yield r
    if fl == "kvm":
        print(r.diagnostics())
    r.cleanup()
    shutil.rmtree(tmp_path / "rkt", ignore_errors=True)
