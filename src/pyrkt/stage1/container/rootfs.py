"""Preparing one app's rootfs inside the pod's mount namespace: /proc, /sys (read-only,
with the app's own cgroups), /dev, the pod's /etc files, volumes, read-only rootfs.

Runs in the pod init (PID 1 of the pod's PID namespace, so /proc shows the pod), before
the app is forked; the app then chroots into the rootfs.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from pyrkt import log
from pyrkt.linux.mount import MS, bind, mount, remount_bind, submounts
from pyrkt.stage1.container import dev
from pyrkt.stage1.container.paths import secure_join
from pyrkt.stage1.plan import AppPlan, MountPlan, VolumeKind

# Parts of /proc an app must not write (as systemd-nspawn and rkt do).
PROC_READONLY = ("sys", "sysrq-trigger", "irq", "bus")
# rkt's protectKernelHidden*: made inaccessible (an empty node of mode 0 bound over them)
# unless --insecure-options=paths.
HIDDEN_DIRS = ("sys/firmware", "sys/hypervisor", "sys/module", "sys/power")
HIDDEN_FILES = ("proc/config.gz", "proc/kallsyms", "proc/sched_debug", "proc/kcore",
                "proc/kmem", "proc/mem")  # fmt: skip
NOSUID_NODEV_NOEXEC = MS.NOSUID | MS.NODEV | MS.NOEXEC


def _ensure_dir(p: Path) -> None:
    if not p.is_dir():
        p.mkdir(parents=True, exist_ok=True)


def _ensure_file(p: Path) -> None:
    if not p.exists() and not p.is_symlink():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch(0o644)


def mount_proc(root: Path, *, protect: bool) -> None:
    proc = secure_join(root, "/proc")  # an image's /proc may be a symlink: stay inside
    _ensure_dir(proc)
    mount("proc", str(proc), "proc", NOSUID_NODEV_NOEXEC)
    if not protect:
        return
    for name in PROC_READONLY:
        p = proc / name
        if p.exists():
            bind(str(p), str(p), recursive=True)
            remount_bind(str(p), read_only=True, extra=NOSUID_NODEV_NOEXEC)


def mount_sys(root: Path, cgroup_views: list[tuple[str, Path]], *, protect: bool) -> None:
    sysd = secure_join(root, "/sys")
    _ensure_dir(sysd)
    mount("sysfs", str(sysd), "sysfs", NOSUID_NODEV_NOEXEC | (MS.RDONLY if protect else 0))
    cg = sysd / "fs" / "cgroup"
    if not cgroup_views or not cg.is_dir():
        return
    if len(cgroup_views) == 1 and cgroup_views[0][0] == "":
        bind(str(cgroup_views[0][1]), str(cg), recursive=False, read_only=True)
        return
    mount("tmpfs", str(cg), "tmpfs", NOSUID_NODEV_NOEXEC, "mode=755")
    for rel, group in cgroup_views:
        target = cg / rel if rel else cg / "unified"
        target.mkdir(parents=True, exist_ok=True)
        bind(str(group), str(target), recursive=False, read_only=True)
    remount_bind(str(cg), read_only=True, extra=NOSUID_NODEV_NOEXEC)


def inaccessible_nodes(folder: Path) -> tuple[Path, Path]:
    """An empty folder and an empty file, mode 0, to bind over what an app may not see."""
    folder.mkdir(parents=True, exist_ok=True)
    d, f = folder / "dir", folder / "file"
    d.mkdir(exist_ok=True)
    f.touch(exist_ok=True)
    d.chmod(0)
    f.chmod(0)
    return d, f


def hide_kernel_paths(root: Path, nodes: tuple[Path, Path]) -> None:
    """Bind the inaccessible nodes over HIDDEN_DIRS and HIDDEN_FILES of the app's own
    /proc and /sys (fresh mounts: no link of the image's on the way)."""
    d, f = nodes
    proc, sysd = secure_join(root, "/proc"), secure_join(root, "/sys")
    for rel in HIDDEN_DIRS + HIDDEN_FILES:
        base, _, rest = rel.partition("/")
        target = (proc if base == "proc" else sysd) / rest
        if rel in HIDDEN_DIRS and target.is_dir():
            bind(str(d), str(target), recursive=False, read_only=True)
        elif rel in HIDDEN_FILES and target.exists():
            bind(str(f), str(target), recursive=False, read_only=True)


def mount_volume(root: Path, m: MountPlan) -> None:
    target = secure_join(root, m.target)
    source = m.source
    if m.kind is VolumeKind.EMPTY:
        source.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        _ensure_dir(target)
    else:
        _ensure_file(target)
    log.debug(f"volume {m.volume}: {source} on {m.target}"
              f"{' (ro)' if m.read_only else ''}{'' if m.recursive else ' (non-recursive)'}")
    bind(str(source), str(target), recursive=m.recursive)
    if m.read_only:
        points = submounts(str(target)) if m.recursive else [str(target)]
        for mp in points:
            remount_bind(mp, read_only=True)


def prepare(
    app: AppPlan,
    etc_files: dict[str, Path],
    cgroup_views: list[tuple[str, Path]],
    *,
    console_tty: str | None = None,
    protect_paths: bool = True,
    inaccessible: tuple[Path, Path] | None = None,
    etc_fallback: Collection[str] = (),
) -> None:
    """Make app.rootfs ready to chroot into. Mounts live in the pod's mount namespace.
    `inaccessible`: the nodes hide_kernel_paths binds (None: nothing is hidden);
    `etc_fallback`: pod files bound only where the image has none."""
    root = app.rootfs
    r = str(root)
    bind(r, r, recursive=True)
    mount_proc(root, protect=protect_paths)
    mount_sys(root, cgroup_views, protect=protect_paths)
    if protect_paths and inaccessible is not None:
        hide_kernel_paths(root, inaccessible)
    devd = secure_join(root, "/dev")
    _ensure_dir(devd)
    dev.populate(devd, console_tty=console_tty)
    for inside, host_file in etc_files.items():
        target = secure_join(root, inside)
        if inside in etc_fallback and os.path.lexists(target):
            continue  # the image's own file wins (rkt's hosts-fallback)
        _ensure_file(target)
        bind(str(host_file), str(target), recursive=False)
    for m in sorted(app.mounts, key=lambda m: m.target.count("/")):
        mount_volume(root, m)
    if app.readonly_rootfs:
        remount_bind(r, read_only=True)
