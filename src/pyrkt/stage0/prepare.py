"""`rkt prepare` (and the first half of `rkt run`): images -> a prepared pod folder.

Fetches each image, merges the image's app with the per-app flags and the environment
flags into the pod manifest (as rkt's stage0 did), selects the stage1, and leaves the pod
in `prepared` with everything the run needs recorded in the folder:

    POD/pod                     the pod manifest
    POD/stage1/manifest         the stage1 image manifest
    POD/stage1-tree             path of the stage1's rendered tree (mounted, never copied)
    POD/stage1-image-id         the stage1's image ID (image gc must keep it)
    POD/appsinfo/<app>/tree     path of the app image's rendered tree
    POD/appsinfo/<app>/manifest the app's image manifest
    POD/volumes/<name>          `empty` volumes
    POD/no-overlay              present with --no-overlay (trees are copied instead)
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from pyrkt.appc import pod as appc
from pyrkt.appc import validate as check
from pyrkt.errors import UsageError
from pyrkt.options import GlobalOptions
from pyrkt.pod import pods
from pyrkt.record import field, record, replace
from pyrkt.stage0.stage1img import Stage1Flags, select_stage1
from pyrkt.stage1 import contract

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@record
class AppSpec:
    """One image on the command line and the per-app flags that followed it."""

    image: str
    args: tuple[str, ...] | None = None
    exec: str = ""
    name: str = ""
    working_dir: str = ""
    user: str = ""
    group: str = ""
    supplementary_gids: tuple[int, ...] | None = None
    environment: tuple[tuple[str, str], ...] = ()
    readonly_rootfs: bool | None = None
    mounts: tuple[tuple[str, str], ...] = ()  # (volume, target)
    memory: str = ""
    cpu: str = ""
    cpu_shares: int | None = None
    caps_retain: tuple[str, ...] | None = None
    caps_remove: tuple[str, ...] | None = None
    signature: str = ""
    seccomp: appc.SeccompFilter | None = None  # replaces the image's seccomp isolator
    oom_score_adj: int | None = None


@record
class PrepareOptions:
    """Everything `rkt prepare` / `rkt run` was asked for, before any image is resolved."""

    apps: tuple[AppSpec, ...] = ()
    volumes: tuple[appc.Volume, ...] = ()
    mounts: tuple[tuple[str, str], ...] = ()  # (volume, target): --mount before the images
    ports: tuple[appc.ExposedPort, ...] = ()
    inherit_env: bool = False
    set_env: tuple[tuple[str, str], ...] = ()
    set_env_file: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    user_annotations: tuple[tuple[str, str], ...] = ()
    user_labels: tuple[tuple[str, str], ...] = ()
    pod_manifest: Path | None = None
    pull_policy: str = "new"
    stage1: Stage1Flags = field(default_factory=Stage1Flags)
    no_overlay: bool = False
    host_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


_NAME_BAD = re.compile(r"[^a-z0-9-]+")


def default_app_name(image_name: str) -> str:
    """Last path component of the image name, as an appc AC name."""
    base = image_name.rstrip("/").rsplit("/", 1)[-1].split(":", 1)[0]
    name = _NAME_BAD.sub("-", base.lower()).strip("-")
    return name[: check.MAX_AC_NAME].rstrip("-") or "app"


def _merge_env(
    base: Sequence[appc.KV], layers: Sequence[Sequence[tuple[str, str]]]
) -> tuple[appc.KV, ...]:
    env: dict[str, str] = {kv.name: kv.value for kv in base}
    for layer in layers:
        env.update(layer)
    return tuple(appc.KV(k, v) for k, v in env.items())


def _set_isolator(isos: list[appc.Isolator], name: str, value: Any) -> None:
    isos[:] = [i for i in isos if i.name != name]
    isos.append(appc.Isolator(name, value))


def merge_app(image_app: appc.App | None, spec: AppSpec, opts: PrepareOptions) -> appc.App:
    """The image's app with the flags applied, as rkt's stage0 wrote it to the manifest."""
    app = image_app or appc.App()
    exec_ = list(app.exec)
    if spec.exec:
        exec_ = [spec.exec]
    if spec.args is not None:
        exec_ += list(spec.args)
    if not exec_:
        raise UsageError(f"image {spec.image!r} has no app to run", "use --exec")
    inherited: list[tuple[str, str]] = []
    if opts.inherit_env:
        own = {kv.name for kv in app.environment}
        # names appc cannot carry (a shell's exported functions, `BASH_FUNC_f%%`) stay out
        inherited = [(k, v) for k, v in opts.host_env.items()
                     if k not in own and check.is_env_name(k) and "\0" not in v]  # fmt: skip
    env = _merge_env(
        [*[appc.KV(k, v) for k, v in inherited], *app.environment],
        [opts.set_env_file, opts.set_env, spec.environment],
    )
    isos = list(app.isolators)
    if spec.memory:
        appc.parse_quantity(spec.memory)
        _set_isolator(isos, appc.ISO_MEMORY, {"limit": spec.memory})
    if spec.cpu:
        appc.parse_quantity(spec.cpu, milli=True)
        _set_isolator(isos, appc.ISO_CPU, {"limit": spec.cpu})
    if spec.cpu_shares is not None:
        _set_isolator(isos, appc.ISO_CPU_SHARES, spec.cpu_shares)
    if spec.caps_retain is not None or spec.caps_remove is not None:
        # rkt: either flag replaces the image's capability isolators, both kinds
        isos = [i for i in isos if i.name not in (appc.ISO_CAPS_RETAIN, appc.ISO_CAPS_REMOVE)]
        if spec.caps_retain is not None:
            isos.append(appc.Isolator(appc.ISO_CAPS_RETAIN, {"set": list(spec.caps_retain)}))
        else:
            isos.append(appc.Isolator(appc.ISO_CAPS_REMOVE, {"set": list(spec.caps_remove or ())}))
    if spec.seccomp is not None:  # --seccomp replaces both of the image's seccomp sets
        isos = [i for i in isos if i.name not in appc.SECCOMP_ISOLATORS.values()]
        isos.append(spec.seccomp.isolator())
    if spec.oom_score_adj is not None:
        _set_isolator(isos, appc.ISO_OOM_SCORE_ADJ, spec.oom_score_adj)
    return replace(
        app,
        exec=tuple(exec_),
        user=spec.user or app.user or "0",
        group=spec.group or app.group or "0",
        supplementary_gids=(
            spec.supplementary_gids
            if spec.supplementary_gids is not None
            else app.supplementary_gids
        ),
        working_directory=spec.working_dir or app.working_directory,
        environment=env,
        isolators=tuple(isos),
    )


def merge_mounts(app: Sequence[tuple[str, str]],
                 pod: Sequence[tuple[str, str]]) -> tuple[appc.Mount, ...]:
    """An app's mounts, then the pod-level ones (`--mount` before the first image); of
    several with the same target, the first (rkt's MergeMounts)."""
    seen: set[str] = set()
    out = []
    for volume, target in (*app, *pod):
        key = posixpath.normpath(target)
        if key not in seen:
            seen.add(key)
            out.append(appc.Mount(volume, target))
    return tuple(out)


@record
class _Resolved:
    """An image resolved in the store: its ID, rendered tree and manifest."""

    image_id: str
    tree: Path
    manifest: dict[str, Any]


def _resolve_image(
    g: GlobalOptions, store: Any, ref: str, pull_policy: str, signature: str = ""
) -> _Resolved:
    from pyrkt.stage0.images import fetch

    image_id = fetch(g, store, ref, pull_policy, signature)
    return _Resolved(image_id, Path(store.render(image_id)), store.manifest(image_id))


def _labels(manifest: Mapping[str, Any]) -> tuple[appc.KV, ...]:
    out = []
    for lab in manifest.get("labels") or []:
        if isinstance(lab, dict) and "name" in lab:
            out.append(appc.KV(str(lab["name"]), str(lab.get("value", ""))))
    return tuple(out)


def _copy_tree(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    from pyrkt import proc  # only --no-overlay copies: not imported on the usual path

    proc.run(["cp", "-a", "--reflink=auto", str(src), str(dst)])


def _make_empty_volumes(pod_dir: Path, pm: appc.PodManifest) -> None:
    """The pod's `empty` volumes, with their mode and owner (the implicit ones of image
    mount points are made when the pod starts: `pyrkt.stage1.volumes`)."""
    for v in pm.volumes:
        if v.kind != "empty":
            continue
        from pyrkt.stage1.planner import empty_volume_dir

        d = empty_volume_dir(pod_dir, v.name)
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, int(v.mode or "0755", 8))
        os.chown(d, v.uid or 0, v.gid or 0)


def _build_manifest(
    g: GlobalOptions, store: Any, opts: PrepareOptions
) -> tuple[appc.PodManifest, dict[str, _Resolved]]:
    resolved: dict[str, _Resolved] = {}
    if opts.pod_manifest is not None:
        pm = appc.load_pod_manifest(check.read_file(opts.pod_manifest, "--pod-manifest"))
        if not pm.apps:  # rkt's words (rkt found it once the pod was prepared)
            raise UsageError("pod must contain at least one application")
        for ra in pm.apps:
            resolved[ra.name] = _resolve_image(
                g, store, ra.image.id or ra.image.name, opts.pull_policy
            )
        return pm, resolved
    apps: list[appc.RuntimeApp] = []
    for spec in opts.apps:
        res = _resolve_image(g, store, spec.image, opts.pull_policy, spec.signature)
        img_name = str(res.manifest.get("name", spec.image))
        name = spec.name or default_app_name(img_name)
        if name in resolved:
            raise UsageError(
                f'duplicate app name "{name}"', "give each app its own with --name"
            )
        from pyrkt.stage0.checks import image_app as parse_image_app

        image_app = parse_image_app(res.manifest, f"app {name!r}")
        apps.append(
            appc.RuntimeApp(
                name=name,
                image=appc.ImageRef(img_name, res.image_id, _labels(res.manifest)),
                app=merge_app(image_app, spec, opts),
                read_only_rootfs=bool(spec.readonly_rootfs),
                mounts=merge_mounts(spec.mounts, opts.mounts),
            )
        )
        resolved[name] = res
    if not apps:
        raise UsageError("must provide at least one image or specify the pod manifest")
    pm = appc.PodManifest(
        apps=tuple(apps),
        volumes=opts.volumes,
        ports=opts.ports,
        annotations=tuple(appc.KV(k, v) for k, v in opts.annotations),
        extra={
            k: dict(v)
            for k, v in (("userAnnotations", opts.user_annotations),
                         ("userLabels", opts.user_labels))
            if v
        },
    )
    return pm, resolved


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def prepare(g: GlobalOptions, opts: PrepareOptions, *, durable: bool = True) -> pods.Pod:
    """A new pod in `prepared`, still locked by this process (the caller closes or runs it).

    `durable=False` (`rkt run`) skips the fsync of the move to `prepared`: the caller
    moves the pod on to `run` at once, durably.
    """
    from pyrkt.image.store import Store
    from pyrkt.stage0.checks import check_pod

    store = Store(g.dir)
    try:
        pm, resolved = _build_manifest(g, store, opts)
        s1 = select_stage1(g, opts.stage1, store)
    finally:
        store.close()
    check_pod(pm, {name: res.manifest for name, res in resolved.items()}, s1.manifest,
              {name: res.tree / "rootfs" for name, res in resolved.items()})  # fmt: skip
    pod = pods.create(g.dir)
    try:
        d = pod.path
        _write(d / "stage1-tree", str(s1.tree.absolute()))
        _write(d / "stage1-image-id", s1.image_id)
        _write(contract.stage1_manifest(d), json.dumps(s1.manifest))
        for name, res in resolved.items():
            _write(d / "appsinfo" / name / "tree", str(res.tree.absolute()))
            _write(d / "appsinfo" / name / "manifest", json.dumps(res.manifest))
        _make_empty_volumes(d, pm)
        if opts.no_overlay:
            _write(d / "no-overlay", "")
            _copy_tree(s1.tree / "rootfs", contract.stage1_rootfs(d))
            for name, res in resolved.items():
                _copy_tree(res.tree / "rootfs", contract.app_rootfs(d, name))
                _write(contract.app_dir(d, name) / "manifest", json.dumps(res.manifest))
        else:
            contract.stage1_rootfs(d).mkdir(parents=True)
        _write(contract.pod_manifest(d), pm.to_json())
        pod.move(pods.Folder.PREPARED, durable=durable)
    except BaseException:
        # As rkt: the pod stays in `prepare`, unlocked once this process lets go of it,
        # an "aborted prepare" that `rkt list` shows and `rkt gc` removes.
        pod.close()
        raise
    return pod
