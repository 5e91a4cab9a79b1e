"""What `prepare` checks once the images and the stage1 are known, before the pod folder
(or any cgroup, network or mount) exists: each app image is for this OS and an
architecture of it, has something to execute, a user and group its image knows,
capabilities that exist; each mount names a volume of the pod; each exposed port is one
an app declares; each host volume's source is usable. The names and forms were checked
when the flags or the manifests were read (`pyrkt.appc.validate`); the planner and the
stage1 check the same again when the pod runs, for pods prepared by an older pyrkt.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pyrkt.appc import pod as appc
from pyrkt.appc import validate as check
from pyrkt.appc.schema import ManifestError
from pyrkt.errors import go_quote
from pyrkt.stage1 import contract
from pyrkt.stage1.planner import check_host_source, resolve_group, resolve_user

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def image_app(manifest: Mapping[str, Any], where: str) -> appc.App | None:
    """The app section of an image manifest (checked as a pod's app is), or None."""
    raw = manifest.get("app")
    return appc.parse_app(raw, f"{where}: image app") if isinstance(raw, dict) else None


def is_kvm(stage1_manifest: Mapping[str, Any]) -> bool:
    for a in stage1_manifest.get("annotations") or []:
        if isinstance(a, dict) and a.get("name") == contract.ANN_FLAVOR:
            return a.get("value") == "kvm"
    return False


def _check_caps(app: appc.App, where: str) -> None:
    for iso in (appc.ISO_CAPS_RETAIN, appc.ISO_CAPS_REMOVE):
        value = app.isolator(iso)
        if value is None:
            continue
        names = value.get("set") if isinstance(value, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise check.InvalidValue(f"{where}: isolator {iso}: \"set\" must be a list of "
                                     "capability names")  # fmt: skip
        from pyrkt.linux.caps import cap_number  # (ctypes: only when an app names caps)

        for n in names:
            try:
                cap_number(n)
            except ValueError as e:
                raise check.InvalidValue(f"{where}: {e}") from None


# rkt's stage0.ValidOSArch
VALID_OS_ARCH = {"linux": ("amd64", "i386", "aarch64", "aarch64_be", "armv6l", "armv7l",
                           "armv7b", "ppc64le")}  # fmt: skip


def check_os_arch(image_manifest: Mapping[str, Any]) -> None:
    """An app image must say it is for this OS and an architecture of it (rkt's
    prepareAppImage, its messages)."""
    labels: dict[str, str] = {}
    for lab in image_manifest.get("labels") or []:
        if isinstance(lab, dict) and isinstance(lab.get("name"), str):
            labels.setdefault(lab["name"], str(lab.get("value", "")))
    stage0 = "error setting up stage0"
    for key in ("os", "arch"):
        if key not in labels:
            raise ManifestError(f"{stage0}: missing {key} label in the image manifest")
    os_, arch = labels["os"], labels["arch"]
    if os_ not in VALID_OS_ARCH:
        raise ManifestError(f"{stage0}: bad os {go_quote(os_)} (must be one of: "
                            f"[{' '.join(sorted(VALID_OS_ARCH))}])")
    if arch not in VALID_OS_ARCH[os_]:
        raise ManifestError(f"{stage0}: bad arch {go_quote(arch)} for {os_} (must be one "
                            f"of: [{' '.join(VALID_OS_ARCH[os_])}])")


def check_pod(pm: appc.PodManifest, images: Mapping[str, Mapping[str, Any]],
              stage1_manifest: Mapping[str, Any],
              roots: Mapping[str, Path] | None = None) -> None:  # fmt: skip
    """Raise ManifestError (or PlanError) for the first thing that would fail the pod.
    `roots`: each app's image rootfs, where its user and group are looked up."""
    volumes = {v.name: v for v in pm.volumes}
    ports: set[str] = set()
    for ra in pm.apps:
        where = f"app {ra.name!r}"
        check_os_arch(images.get(ra.name, {}))
        app = ra.app if ra.app is not None else image_app(images.get(ra.name, {}), where)
        if app is None:
            raise ManifestError(f"{where}: the image has no app to run", "use --exec")
        check.exec_argv(app.exec, f"{where}: exec")
        rootfs = (roots or {}).get(ra.name)
        if rootfs is not None:
            resolve_user(rootfs, app.user or "0", ra.name)
            if app.group:
                resolve_group(rootfs, app.group, ra.name)
        _check_caps(app, where)
        for m in ra.mounts:
            if m.volume not in volumes:
                raise ManifestError(f"{where}: no volume named {m.volume!r}",
                                          "add it with --volume")  # fmt: skip
        ports.update(p.name for p in app.ports)
    for ep in pm.ports:
        if ep.name not in ports:
            raise ManifestError(f"port name {ep.name!r} is not defined by any app",
                                      "known: " + (", ".join(sorted(ports)) or "none"))
    for_vm = is_kvm(stage1_manifest)
    for v in pm.volumes:
        if v.kind == "host":
            check_host_source(v, for_vm=for_vm)
