"""rkt's tests/rkt_run_test.go and rkt_prepare_test.go: flags that conflict with
--pod-manifest (checked before any image is read or pod exists), and pre-start event
handlers (run as root before the app, even when the app runs as another user)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rktcompat import COREOS, KVM, ImageMaker, Rkt

CONFLICT = "conflicting flags set with --pod-manifest (see --help)"
POD_FLAGS = [
    ["--inherit-env"], ["--no-store"], ["--store-only"], ["--port=foo:80"],
    ["--set-env=foo=bar"], ["--volume=foo,kind=host,source=/tmp"],
    ["--mount=volume=foo,target=/tmp", "--volume=foo,kind=host,source=/tmp"],
    ["--pull-policy=never"], ["--pull-policy=update"],
]  # fmt: skip
IMAGE_FLAGS = [["--exec=/bin/sh"], ["--user=user_foo"], ["--group=group_foo"]]


@pytest.mark.root
@pytest.mark.parametrize("verb", ["run", "prepare"])
@pytest.mark.parametrize("flags", POD_FLAGS + IMAGE_FLAGS, ids=lambda f: f[0])
def test_conflicting_flags_with_pod_manifest(rkt: Rkt, verb: str, flags: list[str]) -> None:
    image = ["dummy-image.aci"] if flags in IMAGE_FLAGS else []
    cp = rkt(verb, "--pod-manifest=/dev/null", *image, *flags)
    assert (cp.returncode, cp.stdout, cp.stderr) == (254, "", f"{verb}: {CONFLICT}\n")
    assert rkt.uuids() == []


@pytest.mark.root
def test_store_only_and_no_store(rkt: Rkt) -> None:
    cp = rkt("run", "--store-only", "--no-store", "dummy-image.aci")
    assert (cp.returncode, cp.stderr) == (254, "run: both --store-only and --no-store "
                                               "specified\n")


@pytest.mark.root
def test_nothing_to_run(rkt: Rkt) -> None:
    cp = rkt("run", "--net=none")
    assert (cp.returncode, cp.stderr) == (254, "run: must provide at least one image or "
                                               "specify the pod manifest\n")


@pytest.mark.root
@pytest.mark.parametrize("net", ["none", "host"])
def test_port_without_a_network(rkt: Rkt, net: str) -> None:
    cp = rkt("run", f"--net={net}", "--port=http:8080", "dummy-image.aci")
    assert (cp.returncode, cp.stderr) == (254, f"run: --port flag does not work with "
                                               f"'{net}' networking\n")


PRE_START = {"name": "pre-start", "exec": ["/bin/sh", "-c", "echo pre-start: $(id -u) $(id -g)"]}
POST_STOP = {"name": "post-stop", "exec": ["/bin/sh", "-c", "echo post-stop: $(id -u) >&2"]}


@pytest.mark.parametrize("flavor", [COREOS, KVM])
def test_pre_start_runs_as_root_before_the_app(flavor: str, rkt: Rkt,
                                               make_image: ImageMaker) -> None:
    """TestPreStart: the handler runs as root, before the app (user 1000), on the
    console; post-stop after it."""
    image = make_image(app={"exec": ["/bin/sh", "-c", "echo app: $(id -u)"], "user": "1000",
                            "group": "1000", "eventHandlers": [PRE_START, POST_STOP]})
    cp = rkt.run(str(image))
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.splitlines() == ["pre-start: 0 0", "app: 1000"]
    assert "post-stop: 0" in cp.stderr.splitlines()


@pytest.mark.root
def test_pod_manifest_with_empty_apps(rkt: Rkt, tmp_path: Path) -> None:
    """rkt_run_pod_manifest_test.go TestPodManifestWithEmptyApps."""
    (tmp_path / "pm.json").write_text('{"acKind":"PodManifest","acVersion":"0.8.11","apps":[]}')
    cp = rkt("run", "--net=none", f"--pod-manifest={tmp_path / 'pm.json'}")
    assert (cp.returncode, cp.stderr) == (254, "run: pod must contain at least one "
                                               "application\n")
    assert rkt.uuids() == []
