"""`fetch_image`: get an image into the store from wherever its reference points.

    docker://[REGISTRY/]NAME[:TAG|@DIGEST]   a Docker Registry v2 / OCI distribution server
                                            (needs --insecure-options=image, as in rkt)
    /path/x.aci, file:///path/x.aci         an ACI file, checked against x.aci.asc
    http(s)://host/x.aci                    an ACI download, checked against x.aci.asc
    oci:DIR[:TAG]                           an OCI image layout on disk (pyrkt extension)
    sha512-<hex prefix>                     an image already in the store
    NAME[:VERSION][,LABEL=VALUE...]         by name: the store's image (pull policy `new`),
                                            else appc meta discovery (see `discovery`)

Pull policy (`--pull-policy`): `new` uses what the store has for a remote reference and
fetches only what is missing; `update` always asks the remote; `never` only uses the
store. Progress goes to the caller's callback: `progress(what, bytes_done, bytes_total)`,
possibly from download threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from pyrkt import log
from pyrkt.errors import NotFound, RktError, UsageError, go_quote
from pyrkt.image import localaci
from pyrkt.image.layers import ByteStream
from pyrkt.image.localaci import IMAGE
from pyrkt.image.policy import PullPolicy as PullPolicy
from pyrkt.image.policy import parse_pull_policy as parse_pull_policy
from pyrkt.image.store import ID_PREFIX, Store
from pyrkt.options import GlobalOptions, Insecure

if TYPE_CHECKING:
    from pyrkt.image.docker.reference import DockerRef

Progress = Callable[[str, int, int], None]
LAYER_MEMORY = 256 << 20  # bytes of downloaded layers a docker fetch may hold in memory


def fetch_image(
    g: GlobalOptions,
    ref: str,
    *,
    pull_policy: str | PullPolicy = PullPolicy.NEW,
    progress: Progress | None = None,
    signature: Path | None = None,
) -> str:
    """Make sure the image `ref` is in the store; return its ID (`sha512-<64 hex>`).

    `signature`: a local detached signature for an ACI (default: the ACI's URL + `.asc`).
    """
    policy = parse_pull_policy(str(pull_policy))
    store = Store(g.dir)
    try:
        with store.space_errors(ref):
            return _fetch(g, store, ref, policy, progress, signature)
    finally:
        store.close()


def _fetch(g: GlobalOptions, store: Store, ref: str, policy: PullPolicy,
           progress: Progress | None, signature: Path | None) -> str:  # fmt: skip
    if signature is not None and ref.startswith((ID_PREFIX, "docker://", "oci:")):
        raise UsageError(f"--signature given for {ref!r}, which is not an ACI")
    if ref.startswith(ID_PREFIX):
        log.debug(f"using image from the store with hash {ref}", IMAGE)
        return store.resolve(ref).id
    if ref.startswith("docker://"):
        return _fetch_docker(g, store, ref, policy, progress)
    if ref.startswith("oci:"):
        from pyrkt.image.oci_layout import fetch_oci_layout

        _need_root_for_layers(ref)
        return fetch_oci_layout(store, ref)
    from pyrkt.image import aci_fetch

    if localaci.is_url(ref):
        if policy is not PullPolicy.UPDATE:
            cached = store.remote_get(ref)
            if cached is not None:
                log.debug(f"using image from local store for url {ref}", IMAGE)
                return cached[0]
        if policy is PullPolicy.NEVER:
            raise NotFound(f"image {ref!r} is not in the store", "--pull-policy=never")
        log.debug(f"remote fetching from URL {go_quote(ref)}", IMAGE)
        image_id = aci_fetch.fetch_aci(g, store, ref, progress=progress, signature=signature)
        store.remote_put(ref, image_id)
        return image_id
    if localaci.is_file_ref(ref):
        log.debug(f"using image from file {ref}", IMAGE)
        return aci_fetch.fetch_aci(g, store, ref, progress=progress, signature=signature)
    return _fetch_by_name(g, store, ref, policy, progress, signature)


def _fetch_by_name(g: GlobalOptions, store: Store, ref: str, policy: PullPolicy,
                   progress: Progress | None, signature: Path | None) -> str:  # fmt: skip
    """A name: the store's image unless `update`, else appc discovery unless `never`."""
    from pyrkt.image import aci_fetch, discovery

    app = discovery.parse_app(ref)
    in_store = ref.split(",")[0]  # NAME[:VERSION]: without a version, the newest
    if policy is not PullPolicy.UPDATE:
        try:
            image_id = store.resolve(in_store).id
            log.debug(f"using image from local store for image name {ref}", IMAGE)
            return image_id
        except NotFound:
            if policy is PullPolicy.NEVER:
                raise NotFound(f"image {ref!r} is not in the store",
                               "--pull-policy=never") from None  # fmt: skip
    log.debug(f"searching for app image {ref}", IMAGE)
    found = discovery.discover_aci(g, app)
    log.debug(f"remote fetching from URL {go_quote(found.aci)}", IMAGE)
    image_id = aci_fetch.fetch_aci(g, store, found.aci, progress=progress,
                                   signature=signature, discovered=found.signature,
                                   check=partial(discovery.check_manifest, app))  # fmt: skip
    store.remote_put(found.aci, image_id)
    return image_id


def _fetch_docker(g: GlobalOptions, store: Store, ref: str, policy: PullPolicy,
                  progress: Progress | None) -> str:  # fmt: skip
    if not g.allows(Insecure.IMAGE):
        raise RktError(
            "signature verification for docker images is not supported",
            "try --insecure-options=image",
        )
    from pyrkt.image.docker.reference import parse_ref

    dref = parse_ref(ref)
    key = str(dref)
    if policy is not PullPolicy.UPDATE:
        cached = store.remote_get(key)
        if cached is not None:
            log.debug(f"using image from local store for url {ref}", IMAGE)
            return cached[0]
    if policy is PullPolicy.NEVER:
        raise NotFound(f"image {key!r} is not in the store", "--pull-policy=never")
    _need_root_for_layers(ref)
    log.debug(f"remote fetching from URL {go_quote(ref)}", IMAGE)
    log.debug(f"fetching image from {ref}", IMAGE)
    image_id = _pull_docker(g, store, dref, progress)
    store.remote_put(key, image_id)
    return image_id


def _need_root_for_layers(ref: str) -> None:
    """Docker and OCI images are stored as their rendered tree, made at fetch with each
    file's owner: only root can do that (rkt group members fetch ACIs, as in rkt)."""
    import os

    if os.geteuid() != 0:
        raise RktError(f"cannot fetch {ref} as an unprivileged user: its layers are applied "
                       "at fetch, keeping the files' owners", "fetch it as root; members of "
                       "the rkt group can fetch ACIs")  # fmt: skip


def _pull_docker(g: GlobalOptions, store: Store, dref: DockerRef,
                 progress: Progress | None) -> str:  # fmt: skip
    from pyrkt.image.docker.pull import PullOptions, pull
    from pyrkt.image.docker2aci import config_to_manifest
    from pyrkt.image.layered import import_layered
    from pyrkt.record import replace

    # layers are applied from memory (no second copy through files) up to LAYER_MEMORY
    options = replace(PullOptions.from_global(g), memory=LAYER_MEMORY)
    with store.staging("pull") as work, pull(dref, work, options=options,
                                             progress=progress) as img:
        digests = [d.digest for d in img.layer_descriptors]
        manifest = config_to_manifest(
            img.config,
            registry=dref.registry,
            repository=dref.repository,
            tag=dref.tag,
            original_name=str(dref),
            image_digest=img.config_digest,
            manifest_digest=img.manifest_digest,
        )

        def layers() -> Iterator[ByteStream]:
            # first asked for once the image is known to be missing from the store
            _check_sizes(store, str(dref), [d.size for d in img.layer_descriptors])
            for blob in img.layers:
                yield blob.open()  # closed by import_layered

        return import_layered(store, manifest, digests, layers, what=str(dref))


def _check_sizes(store: Store, what: str, sizes: list[int]) -> None:
    """Before downloading: refuse layers whose compressed size alone is over a cap, and
    a download the store has no room for (the blobs past LAYER_MEMORY go to files, and
    the tree takes at least the compressed size again)."""
    from pyrkt.image.limits import limits, require_space

    limits().check_compressed(what, sizes)
    total = sum(sizes)
    require_space(store.root, total + max(0, total - LAYER_MEMORY), what)
