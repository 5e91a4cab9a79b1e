"""`rkt image list|rm|gc|cat-manifest|export|extract|render|verify`."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pyrkt.cli.image_common import fulltime, ibytes, parse_flags, reltime, tabwrite
from pyrkt.errors import RktError, UsageError
from pyrkt.image.store import ImageInfo, ImageKind, Store, image_id_of, short_id
from pyrkt.options import GlobalOptions

USAGE = """Usage:
  rkt image [command]

Available Commands:
  cat-manifest  Inspect and print the image manifest
  export        Export a stored image to an ACI file
  extract       Extract a stored image to a directory
  gc            Garbage collect local store
  list          List images in the local store
  render        Render a stored image to a directory with all its dependencies
  rm            Remove one or more images with the given IDs or image names from the local store
  verify        Check stored images against their IDs (pyrkt extension)"""

FIELDS = {"id": "ID", "name": "NAME", "size": "SIZE", "importtime": "IMPORT TIME",
          "lastused": "LAST USED"}  # fmt: skip
SORTABLE = {"name", "importtime", "lastused", "size"}


def main(argv: list[str], g: GlobalOptions) -> int:
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    sub = argv[1]
    handler = SUBCOMMANDS.get(sub)
    if handler is None:
        raise UsageError(f"unknown command {sub!r} for \"rkt image\"", "see 'rkt image --help'")
    store = Store(g.dir)
    try:
        return handler(argv[2:], g, store)
    finally:
        store.close()


def _fields(value: str) -> list[str]:
    out: list[str] = []
    for f in value.split(","):
        f = f.strip().lower()
        if f not in FIELDS:
            raise UsageError(f"unknown field {f!r}", f"valid: {', '.join(FIELDS)}")
        if f in out:
            raise UsageError(f"duplicated field {f!r}")
        out.append(f)
    return out


def _cell(info: ImageInfo, field: str, full: bool) -> str:
    if field == "id":
        return info.id if full else short_id(info.id)
    if field == "name":
        return info.name_version
    if field == "size":
        return str(info.size) if full else ibytes(info.size)
    t = info.import_time if field == "importtime" else info.last_used
    return fulltime(t) if full else reltime(t)


def cmd_list(args: list[str], g: GlobalOptions, store: Store) -> int:
    opts, pos = parse_flags(
        args,
        {"fields": str, "no-legend": bool, "full": bool, "format": str, "sort": str,
         "order": str},
        {"fields": "id,name,size,importtime,lastused", "sort": "importtime", "order": "asc"},
    )  # fmt: skip
    if opts.get("help"):
        print("Usage:\n  rkt image list [flags]")
        return 0
    if pos:
        raise UsageError("image list takes no arguments")
    fields = _fields(str(opts["fields"]))
    images = store.all_images()
    sort = [s.strip().lower() for s in str(opts["sort"]).split(",") if s.strip()]
    for s in sort:
        if s not in SORTABLE:
            raise UsageError(f"unknown sort field {s!r}", f"valid: {', '.join(sorted(SORTABLE))}")
    if str(opts["order"]) not in ("asc", "desc"):
        raise UsageError("wrong sort order", "valid: asc, desc")
    keys: dict[str, Callable[[ImageInfo], object]] = {
        "name": lambda i: i.name_version, "importtime": lambda i: i.import_time,
        "lastused": lambda i: i.last_used, "size": lambda i: i.size,
    }  # fmt: skip
    images.sort(key=lambda i: tuple(keys[s](i) for s in sort),
                reverse=opts["order"] == "desc")  # fmt: skip
    fmt = str(opts.get("format") or "")
    if fmt:
        if fmt not in ("json", "json-pretty"):
            raise UsageError(f"unknown format {fmt!r}", "valid: json, json-pretty")
        doc = [
            {"id": i.id, "name": i.name_version, "import_time": int(i.import_time * 1e9),
             "last_used_time": int(i.last_used * 1e9), "size": i.size}
            for i in images
        ]  # fmt: skip
        print(json.dumps(doc, indent="\t" if fmt == "json-pretty" else None))
        return 0
    rows = [] if opts.get("no-legend") else [[FIELDS[f] for f in fields]]
    rows += [[_cell(i, f, bool(opts.get("full"))) for f in fields] for i in images]
    print(tabwrite(rows), end="")
    return 0


def _resolve_all(store: Store, refs: list[str]) -> list[ImageInfo]:
    return [store.resolve(r) for r in refs]


def cmd_rm(args: list[str], g: GlobalOptions, store: Store) -> int:
    opts, refs = parse_flags(args, {})
    if opts.get("help"):
        print("Usage:\n  rkt image rm IMAGEID|IMAGENAME...")
        return 0
    if not refs:
        raise UsageError("wrong number of arguments", "see --help")
    done = 0
    failed = False
    in_use = _trees_in_use(g, store)
    for ref in refs:
        try:
            info = store.resolve(ref)
            store.remove(info.id, keep_tree=info.id in in_use)
        except RktError as e:
            print(f"image rm: {e}", file=sys.stderr)
            failed = True
            continue
        print(f'successfully removed aci for image ID: "{info.id}"')
        done += 1
    print(f"rm: {done} image(s) successfully removed")
    return 254 if failed else 0


def _images_in_use(g: GlobalOptions) -> set[str]:
    """Image IDs named by any pod manifest under DIR/pods (those are never collected)."""
    used: set[str] = set()
    for manifest in (g.dir / "pods").glob("*/*/pod"):
        try:
            doc = json.loads(manifest.read_text())
            for app in doc.get("apps") or []:
                used.add(str((app.get("image") or {}).get("id") or ""))
        except (OSError, ValueError, AttributeError):
            continue
    return used


def _trees_in_use(g: GlobalOptions, store: Store) -> set[str]:
    """IDs of the images whose rendered trees pods not yet garbage use (stage1 and app
    trees, as each pod recorded them), as rkt's treestore gc counted them."""
    from pyrkt.pod import pods

    used: set[str] = set()
    trees = store.trees.absolute()
    for pod in pods.all_pods(g.dir):
        if pod.folder is pods.Folder.GARBAGE:
            continue
        for rec in (pod.path / "stage1-tree", *pod.path.glob("appsinfo/*/tree")):
            try:
                tree = Path(rec.read_text().strip())
            except OSError:
                continue
            if tree.parent == trees:
                used.add(tree.name)
    return used


def _duration(value: str) -> float:
    import re

    total = 0.0
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    if not parts or "".join(a + b for a, b in parts) != value:
        raise UsageError(f"invalid duration {value!r}", "e.g. 24h, 30m, 1h30m")
    for num, unit in parts:
        total += float(num) * units[unit]
    return total


def cmd_gc(args: list[str], g: GlobalOptions, store: Store) -> int:
    opts, _ = parse_flags(args, {"grace-period": str}, {"grace-period": "24h"})
    if opts.get("help"):
        print("Usage:\n  rkt image gc [--grace-period=24h]")
        return 0
    grace = _duration(str(opts["grace-period"]))
    used = _images_in_use(g)
    trees_used = _trees_in_use(g, store)
    now = time.time()
    for path in store.gc_storage(keep=trees_used):
        print(f'removed unreferenced store data "{path}"')
    removed = 0
    for info in store.all_images():
        if info.id in used or now - info.last_used < grace:
            continue
        store.remove(info.id, keep_tree=info.id in trees_used)
        print(f'successfully removed aci for image ID: "{info.id}"')
        removed += 1
    if removed:
        print(f"{removed} image(s) successfully removed")
    from pyrkt.stage1.kvm import disks  # VM disk layers over the ext4 images just removed

    for layer in disks.sweep_layers(g.dir / "cache" / disks.CACHE_DIR):
        print(f'removed unreferenced store data "{layer}"')
    return 0


def cmd_cat_manifest(args: list[str], g: GlobalOptions, store: Store) -> int:
    opts, refs = parse_flags(args, {"pretty-print": bool}, {"pretty-print": True})
    if opts.get("help"):
        print("Usage:\n  rkt image cat-manifest IMAGEID|IMAGENAME")
        return 0
    if len(refs) != 1:
        raise UsageError("wrong number of arguments", "see --help")
    doc = store.manifest(store.resolve(refs[0]).id)
    print(json.dumps(doc, indent="\t" if opts["pretty-print"] else None))
    return 0


def cmd_export(args: list[str], g: GlobalOptions, store: Store) -> int:
    from pyrkt.image.export import export_aci

    opts, pos = parse_flags(args, {"overwrite": bool})
    if opts.get("help"):
        print("Usage:\n  rkt image export IMAGEID|IMAGENAME OUTPUT_ACI_FILE [--overwrite]")
        return 0
    if len(pos) != 2:
        raise UsageError("wrong number of arguments", "see --help")
    export_aci(store, store.resolve(pos[0]).id, Path(pos[1]),
               overwrite=bool(opts.get("overwrite")))  # fmt: skip
    return 0


def _extract(args: list[str], store: Store, verb: str) -> int:
    from pyrkt.image.export import extract_tree

    opts, pos = parse_flags(args, {"overwrite": bool, "rootfs-only": bool})
    if opts.get("help") or len(pos) != 2:
        print(f"Usage:\n  rkt image {verb} IMAGEID|IMAGENAME DEST_DIR "
              "[--rootfs-only] [--overwrite]")  # fmt: skip
        return 0 if opts.get("help") else 254
    extract_tree(store, store.resolve(pos[0]).id, Path(pos[1]),
                 rootfs_only=bool(opts.get("rootfs-only")),
                 overwrite=bool(opts.get("overwrite")))  # fmt: skip
    return 0


def cmd_extract(args: list[str], g: GlobalOptions, store: Store) -> int:
    return _extract(args, store, "extract")


def cmd_render(args: list[str], g: GlobalOptions, store: Store) -> int:
    return _extract(args, store, "render")


def cmd_verify(args: list[str], g: GlobalOptions, store: Store) -> int:
    opts, refs = parse_flags(args, {})
    if opts.get("help"):
        print("Usage:\n  rkt image verify [IMAGEID|IMAGENAME...]")
        return 0
    images = _resolve_all(store, refs) if refs else store.all_images()
    bad = 0
    for info in images:
        problem = _check(store, info)
        print(f"{short_id(info.id)}\t{info.name_version}\t{problem or 'ok'}")
        bad += problem is not None
    return 254 if bad else 0


def _check(store: Store, info: ImageInfo) -> str | None:
    if info.kind is ImageKind.ACI:
        blob = store.blob_path(info.id)
        if blob is None:
            return "ACI blob missing"
        h = hashlib.sha512()
        with open(blob, "rb") as f:
            while buf := f.read(1 << 20):
                h.update(buf)
        if image_id_of(h) != info.id:
            return "ACI blob does not match the image ID"
        return None
    tree = store.trees / info.id
    if not (tree / "rootfs").is_dir() or not (tree / "manifest").is_file():
        return "rendered tree missing"
    if (tree / "manifest").read_bytes() != store.manifest_bytes(info.id):
        return "rendered tree's manifest does not match the index"
    return None


Handler = Callable[[list[str], GlobalOptions, Store], int]
SUBCOMMANDS: dict[str, Handler] = {
    "list": cmd_list,
    "rm": cmd_rm,
    "gc": cmd_gc,
    "cat-manifest": cmd_cat_manifest,
    "export": cmd_export,
    "extract": cmd_extract,
    "render": cmd_render,
    "verify": cmd_verify,
}
