"""Pulling one image from a Docker Registry v2 / OCI distribution server.

    with pull("docker://127.0.0.1:5000/redis", workdir, options=opts) as img:
        img.config            # the image config JSON (dict), digest-verified
        for blob in img.layers:   # LayerBlob(path, digest, media_type, size), in order,
            apply(blob.path)      # each verified; later layers download meanwhile

`pull` returns once the manifest and the config are fetched and verified (so a caller
can decide from them that it has the image already); layer downloads start, all at once
in a small thread pool, with `img.layers.start()` or the first `next(img.layers)`.
Leaving the `with` block (or `img.close()`) stops any that are still running. Files are
written only under `workdir` (the caller's temp dir, which the caller removes).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import Any

from pyrkt import log
from pyrkt.image.docker.auth import Credentials, load_credentials
from pyrkt.image.docker.blobs import LayerDownloads, ProgressFn, download_blob
from pyrkt.image.docker.manifest import Descriptor, ManifestError, fetch_manifest
from pyrkt.image.docker.reference import DockerRef, parse_ref
from pyrkt.image.docker.transport import RegistrySession
from pyrkt.options import GlobalOptions, Insecure
from pyrkt.record import record


@record
class PullOptions:
    insecure_http: bool = False  # --insecure-options=http: plain http allowed
    insecure_tls: bool = False  # --insecure-options=tls: certificates not verified
    config_dirs: tuple[Path, ...] = ()  # where auth.d lives, lowest precedence first
    docker_config: Path | None = None  # default: $DOCKER_CONFIG or ~/.docker/config.json
    os: str = "linux"
    arch: str = "amd64"
    workers: int = 3  # parallel layer downloads
    memory: int = 0  # layers up to this many bytes in all are kept in memory, not files
    credentials: dict[str, Credentials] | None = None

    @classmethod
    def from_global(cls, g: GlobalOptions) -> PullOptions:
        return cls(insecure_http=g.allows(Insecure.HTTP), insecure_tls=g.allows(Insecure.TLS),
                   config_dirs=tuple(g.config_dirs))


@record(frozen=False)
class PulledImage:
    ref: DockerRef
    manifest_digest: str
    manifest_media_type: str
    config: dict[str, Any]
    config_digest: str
    layer_descriptors: tuple[Descriptor, ...]
    layers: LayerDownloads

    @property
    def name(self) -> str:
        """REGISTRY/REPOSITORY, as rkt names docker images."""
        return self.ref.name

    @property
    def tag(self) -> str | None:
        return self.ref.tag

    @property
    def diff_ids(self) -> list[str]:
        """Digests of the uncompressed layers, from the config (for checking on extract)."""
        ids = self.config.get("rootfs", {}).get("diff_ids", [])
        return [str(x) for x in ids] if isinstance(ids, list) else []

    def close(self) -> None:
        self.layers.close()

    def __enter__(self) -> PulledImage:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def pull(ref: str | DockerRef, workdir: Path, *, options: PullOptions | None = None,
         progress: ProgressFn | None = None) -> PulledImage:
    opts = options or PullOptions()
    dref = ref if isinstance(ref, DockerRef) else parse_ref(ref)
    creds = opts.credentials if opts.credentials is not None else \
        load_credentials(opts.config_dirs, opts.docker_config)
    sess = RegistrySession(dref.registry, dref.repository, insecure_http=opts.insecure_http,
                           insecure_tls=opts.insecure_tls,
                           credentials=creds.get(dref.registry))
    what = str(dref)
    im = fetch_manifest(sess, dref.reference, what, os_name=opts.os, arch=opts.arch)
    log.debug(f"{what}: manifest {im.digest}, {len(im.layers)} layers")
    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path = download_blob(sess, im.config, workdir)
    try:
        config = json.loads(cfg_path.read_bytes())
    except ValueError as e:
        raise ManifestError(f"{what}: image config {im.config.digest} is not JSON") from e
    if not isinstance(config, dict):
        raise ManifestError(f"{what}: image config {im.config.digest} is not an object")
    got = (config.get("os"), config.get("architecture"))
    if got != (opts.os, opts.arch):
        log.warn(f"{what}: image is for {got[0]}/{got[1]}, not {opts.os}/{opts.arch}")
    diff_ids = config.get("rootfs", {}).get("diff_ids")
    if isinstance(diff_ids, list) and len(diff_ids) != len(im.layers):
        raise ManifestError(f"{what}: config names {len(diff_ids)} layers, manifest "
                            f"{len(im.layers)}")
    layers = LayerDownloads(sess, im.layers, workdir, progress=progress, workers=opts.workers,
                            memory=opts.memory)
    return PulledImage(ref=dref, manifest_digest=im.digest, manifest_media_type=im.media_type,
                       config=config, config_digest=im.config.digest,
                       layer_descriptors=im.layers, layers=layers)
