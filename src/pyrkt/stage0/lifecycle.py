"""stop, enter, rm and gc: everything after a pod ran, through its stage1's entrypoints.

None of these needs the pod's mounts (they live and die in the pod's private mount
namespace): entrypoints are run from the rendered stage1 tree, with cwd = pod folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NoReturn

from pyrkt import log, proc
from pyrkt.errors import CommandFailed, NotFound, RktError, go_quote
from pyrkt.options import GlobalOptions
from pyrkt.pod import pods
from pyrkt.pod.pods import Folder, Pod, State
from pyrkt.stage0 import mounts
from pyrkt.stage0.run import entrypoint, inprocess_module, stage1_env
from pyrkt.stage1 import contract


def stop(g: GlobalOptions, pod: Pod, *, force: bool = False) -> None:
    state = pod.state()
    if state is not State.RUNNING:
        raise RktError(f"pod {pod.uuid} is not running (state: {state})")
    args = [str(entrypoint(pod.path, contract.ANN_STOP))]
    if force:
        args.append("--force")
    args.append(pod.uuid)
    proc.run(args, cwd=pod.path, env=stage1_env())


def enter(g: GlobalOptions, pod: Pod, app: str, cmd: list[str]) -> NoReturn:
    from pyrkt.pod.status import read_pid
    from pyrkt.stage1.planner import load_manifest

    state = pod.state()
    if state is not State.RUNNING:
        raise RktError(f"pod {pod.uuid} is not running (state: {state})")
    names = [a.name for a in load_manifest(pod.path).apps]
    if not app:
        if len(names) != 1:
            raise RktError(
                "the pod has more than one app: " + ", ".join(names), "choose one with --app"
            )
        app = names[0]
    elif app not in names:
        raise RktError(f"pod {pod.uuid} has no app named {app!r}")
    pid = read_pid(pod.path)
    entry = entrypoint(pod.path, contract.ANN_ENTER)
    argv = [str(entry)]
    if g.debug:
        argv.append("--debug")
    if pid is not None:
        argv.append(f"--pid={pid}")
    argv += [f"--appname={app}", "--", *(cmd or ["/bin/sh"])]
    log.debug("+ " + " ".join(argv))
    os.chdir(pod.path)
    try:
        os.execve(entry, argv, stage1_env())
    except OSError as e:
        raise RktError(f"cannot execute the stage1 enter entrypoint: {e}") from e


# ---- removal ------------------------------------------------------------------------


def _stage1_gc(g: GlobalOptions, pod: Pod) -> None:
    try:
        entry = entrypoint(pod.path, contract.ANN_GC)
    except (RktError, OSError) as e:
        log.debug(f"pod {pod.uuid}: no stage1 gc ({e})")
        return
    if not entry.exists():
        log.warn(f"pod {pod.uuid}: stage1 gc entrypoint {entry} is missing")
        return
    args = [str(entry)]
    if g.debug:
        args.append("--debug")
    args.append(pod.uuid)
    module = inprocess_module(entry, "gc")
    if module is not None:
        _gc_inprocess(module, pod, args[1:])
        return
    try:
        proc.run(args, cwd=pod.path, env=stage1_env())
    except CommandFailed as e:
        log.warn(f"pod {pod.uuid}: stage1 gc failed: {e}")


def _gc_inprocess(module: str, pod: Pod, args: list[str]) -> None:
    """Our own flavor's gc, called here rather than through `sh` and a new interpreter
    (one per pod adds up in `rkt gc`); same cwd and arguments."""
    import importlib

    cwd = os.getcwd()
    try:
        os.chdir(pod.path)
        main = importlib.import_module(module + ".__main__").main
        code = main(["gc", *args])
        if code:
            log.warn(f"pod {pod.uuid}: stage1 gc failed with exit status {code}")
    except (Exception, SystemExit) as e:
        log.warn(f"pod {pod.uuid}: stage1 gc failed: {e}")
    finally:
        os.chdir(cwd)
        log.set_prefix("rkt")


def delete(g: GlobalOptions, pod: Pod) -> None:
    """Remove a pod this process holds locked (in exited-garbage or garbage)."""
    if pod.folder is Folder.EXITED_GARBAGE:
        _stage1_gc(g, pod)
    mounts.unmount_all(pod.path)
    path = pod.path
    pod.close()
    from pyrkt.linux import beneath

    try:  # the pod wrote parts of it: no symlink followed, no recursion (a deep tree)
        beneath.remove_tree(path)
    except OSError as e:
        raise RktError(f"cannot remove pod folder {path}: {e}") from e


def remove(g: GlobalOptions, pod: Pod, say: Callable[[str], None]) -> None:
    """`rkt rm`: an exited, prepared or aborted pod, now; `say` gets rkt's notes on the
    way (moving a prepared or aborted pod to garbage). An RktError in rkt's words for a
    pod that cannot be removed."""
    q = go_quote(pod.uuid)
    state = pod.state()
    if state is State.RUNNING:
        raise RktError(f"pod {q} is currently running")
    if state in (State.EMBRYO, State.PREPARING):
        raise RktError(f"pod {q} is currently being prepared")
    if state is State.DELETING:
        raise RktError(f"pod {q} is currently being deleted")
    if not pod.try_lock():  # taken meanwhile
        raise RktError(f"pod {q} is currently running")
    if pod.folder is Folder.RUN:
        pod.move(Folder.EXITED_GARBAGE)
    elif pod.folder in (Folder.PREPARE, Folder.PREPARED, Folder.EMBRYO):
        what = "expired prepared pod" if pod.folder is Folder.PREPARED else "failed prepare"
        say(f"moving {what} {q} to garbage")
        pod.move(Folder.GARBAGE)
    delete(g, pod)


@dataclass(frozen=True)
class GcEvent:
    """What gc did to one pod: "exited", "aborted", "expired" (moved to garbage, as the
    pod was exited, an aborted prepare, a prepared pod past --expire-prepared),
    "removing" (about to be deleted), "kept" (not removed: `detail` says why)."""

    uuid: str
    what: str
    detail: str = ""


def _try_lock(pod: Pod) -> bool:
    """Lock a pod for gc; False when it is in use or was removed meanwhile."""
    try:
        return pod.try_lock()
    except (NotFound, FileNotFoundError):
        return False


def _age(pod: Pod) -> float:
    try:
        return time.time() - os.stat(pod.path).st_mtime
    except OSError:
        return 0.0


# An embryo is a pod folder made but not yet locked: one older than this was left by a
# `rkt run`/`prepare` that died in that instant, and is garbage.
EMBRYO_STALE_S = 600.0


def _mark(g: GlobalOptions, folders: tuple[Folder, ...], what: str,
          expire_prepared: float) -> Iterator[GcEvent]:  # fmt: skip
    for pod in list(pods.all_pods(g.dir)):
        if pod.folder not in folders:
            continue
        if pod.folder is Folder.EMBRYO and _age(pod) < EMBRYO_STALE_S:
            continue  # perhaps being created right now (made, not yet locked)
        if pod.folder is Folder.PREPARED and _age(pod) <= expire_prepared:
            continue
        if not _try_lock(pod):
            pod.close()
            continue  # running, being prepared, or gone
        try:
            pod.move(Folder.EXITED_GARBAGE if pod.folder is Folder.RUN else Folder.GARBAGE)
            os.utime(pod.path)  # the mark time
            yield GcEvent(pod.uuid, what)
        finally:
            pod.close()


def gc(
    g: GlobalOptions,
    *,
    grace: float = 1800.0,
    expire_prepared: float = 86400.0,
    mark_only: bool = False,
) -> Iterator[GcEvent]:
    """rkt gc, in rkt's order: exited pods and aborted prepares to garbage (all that
    --mark-only does), then expired prepared pods, then delete what is in the garbage
    (exited pods once marked longer ago than the grace period), then remove the image
    store's staging that killed `rkt run`s and `fetch`es left (the store's own sweep:
    staging in use is locked and stays)."""
    yield from _mark(g, (Folder.RUN,), "exited", expire_prepared)
    yield from _mark(g, (Folder.PREPARE, Folder.EMBRYO), "aborted", expire_prepared)
    if mark_only:
        return
    yield from _mark(g, (Folder.PREPARED,), "expired", expire_prepared)
    for folder in (Folder.EXITED_GARBAGE, Folder.GARBAGE):
        for pod in list(pods.all_pods(g.dir)):
            if pod.folder is not folder:
                continue
            if folder is Folder.EXITED_GARBAGE and _age(pod) < grace:
                yield GcEvent(pod.uuid, "kept", "still within grace period")
                continue
            if not _try_lock(pod):
                pod.close()
                continue
            try:
                yield GcEvent(pod.uuid, "removing")
                delete(g, pod)
            except RktError as e:
                yield GcEvent(pod.uuid, "kept", str(e))
            finally:
                pod.close()
    from pyrkt.image.store import Store

    Store(g.dir).sweep_staging()  # what killed `rkt run`s and `fetch`es left in staging
    _gc_vm_templates(g, grace)
    _gc_disk_layers(g)


def _gc_disk_layers(g: GlobalOptions) -> None:
    """The kvm stage1's cached empty disk layers whose image is gone (disks.sweep_layers)."""
    from pyrkt.stage1.kvm import disks

    try:
        for layer in disks.sweep_layers(g.dir / "cache" / disks.CACHE_DIR):
            log.debug(f"gc: removed the disk layer {layer.name}: its image is gone")
    except OSError as e:
        log.warn(f"cannot collect the VM disk layers: {e}")

def _gc_vm_templates(g: GlobalOptions, grace: float) -> None:
    """The kvm stage1's VM templates that no pod can use any more, or that none used for
    the grace period (they hold memory: their RAM files are on a tmpfs)."""
    from pyrkt.stage1.kvm.templates import store

    try:
        store.gc(store.store_dir(g.dir / "cache"), grace)
    except OSError as e:
        log.warn(f"cannot collect the VM templates: {e}")
