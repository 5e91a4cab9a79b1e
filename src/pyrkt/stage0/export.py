"""`rkt export UUID OUT.aci`: an exited pod's app, with what it changed, as an ACI.

The pod's mounts died with it, so the app's rootfs is put together again here: a
read-only overlay of the app's upper dir over the image tree (with --no-overlay: a
read-only bind of the app's copy, opened through `pyrkt.linux.beneath`), mounted in a
private mount namespace of this (short-lived) process, then tarred with the image
manifest. GNU tar archives symlinks, FIFOs and device nodes as such, never reading
through them. A VM pod whose apps' rootfs were disks is read back by a short VM
(`stage1/kvm/diskexport.py`): the host never mounts what a guest wrote.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pyrkt import proc
from pyrkt.errors import RktError
from pyrkt.options import GlobalOptions
from pyrkt.pod.pods import Pod, State
from pyrkt.stage0 import mounts
from pyrkt.stage1 import contract


def export(g: GlobalOptions, pod: Pod, app: str, out: Path) -> None:
    from pyrkt.linux import mountns
    from pyrkt.stage1.planner import load_manifest

    state = pod.state()
    if state not in (State.EXITED, State.EXITED_GARBAGE):
        raise RktError(f"pod {pod.uuid} is not exited (state: {state})", "stop it first")
    names = [a.name for a in load_manifest(pod.path).apps]
    if not app:
        if len(names) != 1:
            raise RktError("the pod has more than one app", "choose one with --app")
        app = names[0]
    if app not in names:
        raise RktError(f"pod {pod.uuid} has no app named {app!r}")
    d = pod.path
    manifest = json.loads((d / "appsinfo" / app / "manifest").read_text())
    if (d / "kvm" / "disks.json").exists():  # a VM pod whose apps' rootfs were disks
        from pyrkt.stage1.kvm import diskexport, disks

        if app in disks.recorded(d):
            with tempfile.TemporaryDirectory(prefix="rkt-export-", dir=g.dir) as tmp:
                diskexport.export_aci(d, app, json.dumps(manifest).encode(), out, Path(tmp))
            return
    with tempfile.TemporaryDirectory(prefix="rkt-export-", dir=g.dir) as tmp:
        t = Path(tmp)
        (t / "manifest").write_text(json.dumps(manifest))
        rootfs = t / "rootfs"
        rootfs.mkdir()
        pid = os.fork()
        if pid == 0:  # child: private namespace, mount, tar, exit
            code = 1
            try:
                mountns.private_mount_namespace()
                if mounts.uses_overlay(d):
                    lower = mounts.app_tree(d, app) / "rootfs"
                    upper = mounts.app_upper(d, app)
                    mountns.mount("overlay", str(rootfs), "overlay", mountns.MS_RDONLY,
                                  f"lowerdir={upper}:{lower}")  # fmt: skip
                else:
                    _bind_app_copy(d, app, rootfs)
                tar = ["tar", "--numeric-owner", "-cf", str(out) + ".tmp", "-C", str(t)]
                proc.run([*tar, "manifest", "rootfs"])
                code = 0
            except BaseException as e:
                print(f"export: {e}", flush=True)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RktError(f"cannot export app {app!r} of pod {pod.uuid}")
        os.replace(str(out) + ".tmp", out)


def _bind_app_copy(d: Path, app: str, target: Path) -> None:
    """With --no-overlay the app's rootfs is a copy in the pod's stage1 rootfs, which the
    pod wrote: opt/stage2/APP/rootfs is opened beneath the stage1 rootfs (a symlink the
    pod left on the way is refused, not followed out to the host), and that very folder
    bound read-only on target, so tar sees nothing else."""
    from pyrkt.linux import beneath, mountns

    with beneath.Root(contract.stage1_rootfs(d)) as s1, \
            s1.open_dir(f"opt/stage2/{app}/rootfs") as src:
        mountns.bind(f"/proc/self/fd/{src.fd}", str(target), read_only=True)
