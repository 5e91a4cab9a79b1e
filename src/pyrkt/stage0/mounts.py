"""The pod's filesystem: the stage1 rootfs and each app's rootfs, as overlays.

`mount_pod` runs in the private mount namespace stage0 made for the pod, so these mounts
vanish with the pod's last process. Upper dirs live in the pod folder
(`POD/overlay/stage1/upper`, `POD/overlay/<app>/upper`), so what a pod wrote (its exit
status files, its apps' changes) outlives the mounts; `stage1_upper` and `app_upper`
give the way to it. With `POD/no-overlay` the trees were copied at prepare time.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pyrkt import log
from pyrkt.errors import RktError
from pyrkt.stage1 import contract


def uses_overlay(pod_dir: Path) -> bool:
    return not (pod_dir / "no-overlay").exists()


def stage1_tree(pod_dir: Path) -> Path:
    return Path(contract.stage1_tree_record(pod_dir).read_text().strip())


def app_tree(pod_dir: Path, app: str) -> Path:
    return Path((pod_dir / "appsinfo" / app / "tree").read_text().strip())


def stage1_upper(pod_dir: Path) -> Path:
    return pod_dir / "overlay" / "stage1" / "upper"


def app_upper(pod_dir: Path, app: str) -> Path:
    return pod_dir / "overlay" / app / "upper"


def _overlay(lower: Path, pod_dir: Path, key: str, target: Path) -> None:
    from pyrkt.linux import mountns

    upper = pod_dir / "overlay" / key / "upper"
    work = pod_dir / "overlay" / key / "work"
    upper.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    log.debug(f"overlay {lower} (upper {upper}) on {target}")
    try:
        mountns.overlay(str(lower), str(upper), str(work), str(target))
    except OSError as e:
        raise RktError(
            f"cannot mount the overlay rootfs at {target}: {e}",
            "is overlayfs available? try --no-overlay",
        ) from e


def mount_pod(pod_dir: Path, apps: list[str]) -> None:
    """Mount the stage1 rootfs and every app rootfs of a pod (private namespace only);
    give each app's /etc an `mtab` (-> ../proc/self/mounts) when it has none, as rkt's
    stage0 did (tools such as util-linux's mount read it)."""
    _mount_pod(pod_dir, apps)
    from pyrkt.linux.beneath import Root

    for app in apps:
        # no /etc, not a folder, a link of the image's, an mtab already: nothing (as rkt)
        with contextlib.suppress(OSError), Root(contract.app_rootfs(pod_dir, app)) as root:
            root.symlink("etc/mtab", "../proc/self/mounts")


def _mount_pod(pod_dir: Path, apps: list[str]) -> None:
    if not uses_overlay(pod_dir):
        return
    s1root = contract.stage1_rootfs(pod_dir)
    _overlay(stage1_tree(pod_dir) / "rootfs", pod_dir, "stage1", s1root)
    for app in apps:
        manifest = pod_dir / "appsinfo" / app / "manifest"
        adir = contract.app_dir(pod_dir, app)
        adir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            (adir / "manifest").write_bytes(manifest.read_bytes())
        _overlay(app_tree(pod_dir, app) / "rootfs", pod_dir, app, contract.app_rootfs(pod_dir, app))


def mounts_under(path: Path) -> list[str]:
    """Mount points at or under `path` in this mount namespace, deepest first."""
    prefix = os.path.realpath(path)
    out = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        mp = fields[4].encode().decode("unicode_escape")
        if mp == prefix or mp.startswith(prefix + "/"):
            out.append(mp)
    return sorted(set(out), key=len, reverse=True)


def unmount_all(path: Path) -> None:
    """Detach every mount under `path` (leftovers of a pod run without a private ns)."""
    from pyrkt.linux import mountns

    for mp in mounts_under(path):
        try:
            mountns.umount(mp, mountns.MNT_DETACH)
        except OSError as e:
            log.warn(f"cannot unmount {mp}: {e}")


def exit_statuses(pod_dir: Path, apps: list[str]) -> dict[str, contract.ExitStatus]:
    """The apps' exit statuses: from the mounted stage1 rootfs, else from its overlay
    upper folder (where the pod's writes stay once its mounts are gone). Both are the
    pod's to write: read through `contract.read_exit_statuses` (bounded, no symlinks)."""
    found, _ = contract.read_exit_statuses(contract.stage1_rootfs(pod_dir), apps)
    if found or not uses_overlay(pod_dir):
        return found
    return contract.read_exit_statuses(stage1_upper(pod_dir), apps)[0]
