"""Docker Registry v2 / OCI distribution client: `pull()` an image's config and layers.

    reference.py  docker://[REGISTRY/]NAME[:TAG|@DIGEST] -> DockerRef
    auth.py       credentials (auth.d dockerAuth, ~/.docker/config.json), challenges
    transport.py  one registry over HTTP(S): scheme, basic/bearer auth, errors
    manifest.py   schema 2 / OCI manifests, indexes resolved to linux/amd64
    blobs.py      verified streaming downloads, parallel and in order
    pull.py       pull(ref, workdir, options=PullOptions(...)) -> PulledImage

Errors are RktError subclasses (AuthError, BlobError, ManifestError, RegistryError,
NotFound) whose message names the registry, image or blob digest concerned.
"""
