"""Fetching ACI files: a path, `file://` or `http(s)://` URL, with its `.asc` signature.

The ACI (and its detached signature, at the same place + `.asc`) are copied into store
staging first; the manifest's name picks the trusted keys (see `signature`); only a
verified ACI is imported (unless `--insecure-options=image`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from pyrkt import log
from pyrkt.appc.image import ImageManifest, load_image_manifest
from pyrkt.errors import NotFound, RktError
from pyrkt.image import localaci
from pyrkt.image.limits import Budget, require_space
from pyrkt.image.localaci import IMAGE, is_url, local_path
from pyrkt.image.signature import Keystore, SignatureError, verify
from pyrkt.image.store import Store, read_aci_manifest
from pyrkt.image.streams import decompressed_chunks
from pyrkt.options import GlobalOptions, Insecure

Progress = Callable[[str, int, int], None]
_CHUNK = 1 << 20


def _download(g: GlobalOptions, url: str, dest: Path, progress: Progress | None,
              *, missing_ok: bool = False, room: Path | None = None) -> bool:  # fmt: skip
    """GET url into dest; False on a 404 if missing_ok. With `room` (the store's root),
    a Content-Length the store has no space for (twice: the download and its
    uncompressed import) is refused before the body is read."""
    from pyrkt.image.httpget import Client, TransportError

    if url.startswith("http://") and not g.allows(Insecure.HTTP):
        raise RktError(f"{url}: plain http is not allowed", "use --insecure-options=http")
    client = Client(verify=not g.allows(Insecure.TLS))
    try:
        with client.get(url) as resp:
            if resp.status_code == 404 and missing_ok:
                return False
            if resp.status_code != 200:
                raise RktError(f"{url}: bad HTTP status code: {resp.status_code}")
            total = int(resp.headers.get("Content-Length") or 0)
            if room is not None:
                require_space(room, 2 * total, url)
            done = 0
            with open(dest, "wb") as out:
                for chunk in resp.iter_content(_CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(url, done, total)
            if total and done != total:
                raise RktError(f"{url}: truncated download ({done} of {total} bytes)")
    except TransportError as e:
        raise RktError(f"download failed: {e}") from e  # e starts with the URL
    finally:
        client.close()
    return True


def fetch_aci(g: GlobalOptions, store: Store, ref: str, *, progress: Progress | None = None,
              signature: Path | None = None, discovered: str | None = None,
              check: Callable[[ImageManifest], None] | None = None) -> str:  # fmt: skip
    """Import one ACI file or URL (verified unless insecure); returns its image ID.

    The signature is `signature` if given (a local file), else the URL `discovered` (appc
    discovery's), else the ACI's location + `.asc`. `check` may refuse the ACI's manifest
    (raising) before anything is imported.
    """
    where = str(signature) if signature is not None else discovered or ref + ".asc"
    with store.staging("fetch") as stage:
        aci = stage / "image.aci"
        sig = stage / "image.aci.asc"
        if is_url(ref):
            log.debug(f"fetching image from {ref}", IMAGE)
            _download(g, ref, aci, progress, room=store.root)
        else:
            src = local_path(ref)
            if not src.is_file():
                raise NotFound(f"{ref}: no such file")
            src_st = os.stat(src)
            shutil.copyfile(src, aci)
        have_sig = False
        if not g.allows(Insecure.IMAGE):
            if signature is not None or not is_url(ref):
                src_sig = signature or local_path(ref + ".asc")
                have_sig = src_sig.is_file()
                if have_sig:
                    shutil.copyfile(src_sig, sig)
            else:
                log.debug(f"downloading signature from {where}", IMAGE)
                have_sig = _download(g, where, sig, None, missing_ok=True)
        manifest = None
        if check is not None or not g.allows(Insecure.IMAGE):
            plain = stage / "plain.tar"
            with open(aci, "rb") as f, open(plain, "wb") as out:
                chunks = decompressed_chunks(f)
                try:
                    for chunk in Budget(store.root, ref).meter(chunks):
                        out.write(chunk)
                finally:
                    chunks.close()
            manifest = load_image_manifest(read_aci_manifest(plain))
            plain.unlink()
            if check is not None:
                check(manifest)
        if g.allows(Insecure.IMAGE):
            log.warn("image signature verification has been disabled", IMAGE)
        else:
            name = manifest.name if manifest is not None else ref
            if not have_sig:  # rkt's words: the error of the signature's open or download
                raise SignatureError(
                    "bad HTTP status code: 404" if is_url(where) else
                    f"open {os.path.abspath(local_path(where))}: no such file or directory")
            fpr = verify(Keystore(g), name, aci, sig)
            log.debug(f"{ref}: signed by trusted key {fpr}")
        image_id = store.import_aci(aci, what=ref)
        if not is_url(ref) and g.allows(Insecure.IMAGE):  # nothing to verify next time
            localaci.remember(g.dir / "cache", src, src_st, image_id)
        return image_id
