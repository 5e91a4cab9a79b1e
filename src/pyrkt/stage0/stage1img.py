"""Which stage1 image a pod gets: the `--stage1-*` flags, else the default.

The five flags are mutually exclusive. Without any, the default applies: rkt's
`stage1.d` configuration over what ./configure chose for this rkt
(pyrkt.stage0.stage1default); a rkt that no configure made builds the `coreos` flavor on
demand (`pyrkt.stage1.build.aci.ensure_stage1`). The result is an image in the store and
its rendered tree, which pods mount (never copy).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pyrkt import log
from pyrkt.errors import NotFound, RktError, UsageError
from pyrkt.options import GlobalOptions
from pyrkt.record import record

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@record
class Stage1Flags:
    """The `--stage1-*` flags (at most one given)."""

    path: str = ""
    name: str = ""
    url: str = ""
    hash: str = ""
    from_dir: str = ""

    def given(self) -> list[tuple[str, str]]:
        pairs = [
            ("--stage1-path", self.path),
            ("--stage1-name", self.name),
            ("--stage1-url", self.url),
            ("--stage1-hash", self.hash),
            ("--stage1-from-dir", self.from_dir),
        ]
        return [(f, v) for f, v in pairs if v]


@record
class Stage1Image:
    """The selected stage1: image ID, rendered tree and manifest."""

    image_id: str
    tree: Path  # rendered: tree/rootfs, tree/manifest
    manifest: dict[str, Any]


def stage1_images_dir(g: GlobalOptions) -> Path:
    """Where `--stage1-from-dir` looks: `paths.d`'s `stage1-images`, else the build's
    `--with-stage1-default-images-directory`, else SYSTEM_CONFIG/stage1-images."""
    from pyrkt.confdir import paths_config

    configured = paths_config(g.system_config, g.local_config).get("stage1-images")
    if configured:
        return Path(configured)
    return Path(g.build.images_dir) if g.build.images_dir else g.system_config / "stage1-images"


def _import_cached(g: GlobalOptions, store: Any, aci: Path) -> str:
    """Import an ACI file, skipping the re-hash when this exact file was imported before
    and is unchanged since (`image.localaci`)."""
    from pyrkt.image import localaci

    try:
        st = aci.stat()
    except OSError as e:
        raise RktError(f"stage1 image {aci}: {e.strerror}") from e
    image_id = localaci.known(store, g.dir / "cache", aci)
    if image_id is not None:
        return image_id
    log.debug(f"importing stage1 image {aci}")
    image_id = str(store.import_aci(aci))
    localaci.remember(g.dir / "cache", aci, st, image_id)
    return image_id


def _fetch(g: GlobalOptions, store: Any, ref: str) -> str:
    from pyrkt.stage0.images import fetch

    return fetch(g, store, ref)


def select_stage1(g: GlobalOptions, flags: Stage1Flags, store: Any) -> Stage1Image:
    given = flags.given()
    if len(given) > 1:
        raise UsageError(
            "flags " + " and ".join(f for f, _ in given) + " are mutually exclusive"
        )
    if flags.path:
        image_id = _import_cached(g, store, Path(flags.path))
    elif flags.from_dir:
        image_id = _import_cached(g, store, stage1_images_dir(g) / flags.from_dir)
    elif flags.hash:
        image_id = store.resolve(flags.hash).id
    elif flags.url:
        if "://" not in flags.url and not flags.url.startswith("file:"):
            image_id = _import_cached(g, store, Path(flags.url))
        elif flags.url.startswith("file://"):
            image_id = _import_cached(g, store, Path(flags.url[len("file://") :]))
        else:
            image_id = _fetch(g, store, flags.url)
    elif flags.name:
        try:
            image_id = store.resolve(flags.name).id
        except NotFound:
            # One of our own names (`coreos.com/rkt/stage1-kvm[:VERSION]`) missing from
            # the store is built on demand, as rkt found its stage1 next to its binary.
            from pyrkt.stage1.build.aci import builtin_image, ensure_stage1

            builtin = builtin_image(flags.name)
            if builtin is None:
                image_id = _fetch(g, store, flags.name)
            else:
                image_id = _import_cached(g, store, ensure_stage1(g, *builtin))
    else:
        image_id = _default(g, store)
    tree = Path(store.render(image_id))
    manifest = json.loads((tree / "manifest").read_text())
    check_stage1(manifest)
    return Stage1Image(image_id, tree, manifest)


def check_stage1(manifest: dict[str, Any]) -> None:
    """Refuse images that are not stage1s, or speak a newer contract than ours."""
    from pyrkt.stage1 import contract

    anns = {
        str(a.get("name")): str(a.get("value", ""))
        for a in manifest.get("annotations") or []
        if isinstance(a, dict)
    }
    name = manifest.get("name", "?")
    if not anns.get(contract.ANN_RUN):
        raise RktError(f"image {name!r} is not a stage1: no {contract.ANN_RUN} annotation")
    version = anns.get(contract.ANN_INTERFACE_VERSION, "1")
    if not version.isdigit() or int(version) > contract.INTERFACE_VERSION:
        raise RktError(
            f"unsupported stage1 interface version {version!r} of {name!r}",
            f"this rkt supports up to {contract.INTERFACE_VERSION}",
        )


def _default(g: GlobalOptions, store: Any) -> str:
    """The default stage1 (pyrkt.stage0.stage1default): the store, the location, the
    image beside the built rkt, in rkt's order (or the build's own image first)."""
    from pyrkt.stage0.stage1default import default_stage1

    d = default_stage1(g)
    if d.on_demand:
        return _builtin_default(g, store)
    if d.note:
        log.info(d.note)

    def from_store() -> str | None:
        if not d.name:
            return None
        try:
            return str(store.resolve(d.ref).id)
        except NotFound:
            return None

    found = from_store() if d.store_first else None
    if found:
        return found
    loc = d.location
    if loc.startswith("file://"):
        loc = loc[len("file://") :]
    if loc and "://" in loc:
        return _fetch(g, store, loc)
    for path in (Path(loc) if loc else None, d.file):
        if path is not None and path.exists():
            return _import_cached(g, store, path)
    found = None if d.store_first else from_store()
    if found:
        return found
    tried = " or ".join(str(p) for p in (loc, d.file) if p)
    raise RktError(
        f"default stage1 image {d.ref or '(no name)'} is not in the store"
        + (f", and there is no {tried}" if tried else " and has no location"),
        "use one of the --stage1-{path,url,name,hash,from-dir} flags",
    )


# The code that builds our stage1 images: what `ensure_stage1` hashes to decide on a rebuild.
_BUILDER_DIR = Path(__file__).resolve().parent.parent / "stage1" / "build"


def _builder_fingerprint() -> str:
    """Names, sizes and mtimes of the stage1 builder's files (a few stats, no reads)."""
    from pyrkt import __version__

    parts = [__version__]
    todo = [str(_BUILDER_DIR)]
    while todo:
        with os.scandir(todo.pop()) as it:
            for e in sorted(it, key=lambda e: e.name):
                if e.name == "__pycache__":
                    continue
                if e.is_dir(follow_symlinks=False):
                    todo.append(e.path)
                else:
                    st = e.stat(follow_symlinks=False)
                    parts.append(f"{e.path}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def _builtin_default(g: GlobalOptions, store: Any) -> str:
    """The `coreos` flavor built on demand, remembered by the builder's fingerprint.

    `ensure_stage1` hashes the builder's code on every call (it reads every file); the
    image it gave last time is reused as long as those files keep their size and mtime
    and the image is still in the store.
    """
    cache = g.dir / "cache" / "stage1-default.json"
    key = _builder_fingerprint()
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    image_id = known.get("image_id") if known.get("key") == key else None
    if isinstance(image_id, str) and store.get(image_id) is not None:
        return image_id
    from pyrkt.stage1.build.aci import ensure_stage1

    image_id = _import_cached(g, store, ensure_stage1(g, "coreos"))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}")
    tmp.write_text(json.dumps({"key": key, "image_id": image_id}))
    os.replace(tmp, cache)
    return image_id
