"""The implicit volumes of a pod, made on the host when it starts (both flavors), as
rkt's stage1 made them: an image mount point that no volume covers gets an empty volume
of its own, `POD/volumes/<app>-<point>` (mode 0755, root's), with rkt's warning; a
docker image's is filled with what the image has there, and takes that folder's mode
and owner (docker's volume semantics).
"""

from __future__ import annotations

import os
import stat

from pyrkt import log
from pyrkt.stage1.plan import MountPlan, PodPlan

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


def make_implicit(plan: PodPlan) -> None:
    for app in plan.apps:
        for m in app.mounts:
            if m.implicit:
                _make(app.name, app.rootfs, m)


def _make(app: str, rootfs: Path, m: MountPlan) -> None:
    point = m.volume[len(app) + 1:]
    log.warn(f'no volume specified for mount point "{point}", implicitly creating an '
             '"empty" volume. This volume will be removed when the pod is garbage-collected.')
    if m.source.exists():
        return  # made by an earlier start of this pod
    m.source.parent.mkdir(parents=True, exist_ok=True)
    mode, uid, gid = 0o755, 0, 0
    src = rootfs / m.target.lstrip("/")  # resolved inside the rootfs by the planner
    if m.seed:
        log.info(f"Docker converted image, initializing implicit volume with data contained "
                 f'at the mount point "{point}".')
        try:
            st = os.lstat(src)
        except OSError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            from pyrkt import proc

            proc.run(["cp", "-a", "--reflink=auto", "--no-target-directory", str(src),
                      str(m.source)])  # fmt: skip
            mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    m.source.mkdir(exist_ok=True)
    os.chown(m.source, uid, gid)
    os.chmod(m.source, mode)
