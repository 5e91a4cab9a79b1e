"""stage0's private mount namespace, over the wrappers in `mount` and `ns`.

stage0 unshares a mount namespace just before it mounts the pod's rootfs and execs the
stage1, so every mount it makes vanishes with the pod, even when rkt is SIGKILLed.
Each wrapper raises OSError naming the syscall.
"""

from __future__ import annotations

from pyrkt.linux.mount import MNT_DETACH, MS, bind, mount, umount
from pyrkt.linux.ns import CLONE, unshare

__all__ = [
    "CLONE_NEWNS", "MNT_DETACH", "MS_BIND", "MS_NODEV", "MS_NOSUID", "MS_PRIVATE",
    "MS_RDONLY", "MS_REC", "MS_REMOUNT", "MS_SLAVE", "bind", "mount", "overlay",
    "private_mount_namespace", "umount", "unshare",
]  # fmt: skip

CLONE_NEWNS = CLONE.NEWNS

MS_RDONLY = MS.RDONLY
MS_NOSUID = MS.NOSUID
MS_NODEV = MS.NODEV
MS_REMOUNT = MS.REMOUNT
MS_BIND = MS.BIND
MS_REC = MS.REC
MS_PRIVATE = MS.PRIVATE
MS_SLAVE = MS.SLAVE


def private_mount_namespace() -> None:
    """Enter a new mount namespace whose mounts do not propagate back to the host."""
    unshare(CLONE_NEWNS)
    mount("none", "/", None, MS_REC | MS_SLAVE)


def overlay(lower: str, upper: str, work: str, target: str) -> None:
    mount("overlay", target, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")
