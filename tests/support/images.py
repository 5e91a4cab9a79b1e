"""Test images built by hand from Debian packages, as root trees and OCI image layouts.

    busybox_rootfs(dest)   /bin/busybox (busybox-static) + applet links, passwd, group, /tmp
    redis_rootfs(dest)     /usr/bin/redis-server + redis-cli, the libraries ldd names, loader
    oci_layout(...)        an OCI image layout (blobs/sha256, index.json) from layer trees
                           or dict layers; gzip/zstd/plain; optional multi-arch index
    raw_layout(...)        the same from ready-made blobs (RawLayer), e.g. gzip_bomb(size)

Layouts are pushed into the test registry with skopeo (see support.registry), so what the
client under test reads was written by an independent tool.
"""

from __future__ import annotations

import enum
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
FIXED_MTIME = 1_600_000_000  # deterministic tars: every entry gets this mtime
CREATED = "2020-09-13T12:26:40Z"

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """\
root:x:0:
user:x:1000:user
nogroup:x:65534:
"""


class Compression(enum.StrEnum):
    GZIP = "gzip"
    ZSTD = "zstd"
    NONE = "none"

    @property
    def media_type(self) -> str:
        base = "application/vnd.oci.image.layer.v1.tar"
        return base if self is Compression.NONE else f"{base}+{self.value}"


@dataclass(frozen=True)
class Entry:
    """A dict-layer entry other than a plain file: kind is file, dir, symlink or hardlink."""

    kind: str = "file"
    data: bytes = b""
    target: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


# A dict layer maps a path inside the image ("etc/motd", "a/.wh.b", "d/.wh..wh..opq")
# to its bytes (a 0644 root-owned file) or an Entry. Parent directories are implied.
DictLayer = Mapping[str, "bytes | Entry"]


@dataclass(frozen=True)
class ImageConfigSpec:
    """The parts of an OCI image config a test sets (`config` in the config JSON)."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/local/bin:/usr/bin:/bin"])
    working_dir: str = ""
    user: str = ""
    exposed_ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"Env": list(self.env)}
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.volumes:
            out["Volumes"] = {v: {} for v in self.volumes}
        if self.labels:
            out["Labels"] = dict(self.labels)
        return out


# ---------------------------------------------------------------- root trees


def _write_etc(root: Path) -> None:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    for d in ("tmp", "root", "home/user", "proc", "sys", "dev"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    if os.geteuid() == 0:
        os.chown(root / "home/user", 1000, 1000)


def busybox_rootfs(dest: Path) -> Path:
    """A root tree with busybox-static's every applet as /bin/<applet> -> busybox."""
    src = Path("/bin/busybox")
    if not src.exists():
        raise FileNotFoundError("/bin/busybox missing: apt-get install busybox-static")
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest / "bin/busybox")
    listing = subprocess.run(
        [str(src), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in listing:
        if applet != "busybox" and not (dest / "bin" / applet).exists():
            (dest / "bin" / applet).symlink_to("busybox")
    (dest / "usr/bin").mkdir(parents=True, exist_ok=True)
    (dest / "usr/bin/env").symlink_to("../../bin/busybox")
    _write_etc(dest)
    return dest


def web_rootfs(root: Path, applets: Sequence[str], index_html: str) -> Path:
    """A small root tree for HTTP tests: busybox with just `applets`, root in
    /etc/passwd and /etc/group, /tmp, and /www/index.html holding index_html."""
    for d in ("bin", "etc", "www", "tmp"):
        (root / d).mkdir(parents=True)
    shutil.copy(Path("/bin/busybox"), root / "bin" / "busybox")
    for a in applets:
        (root / "bin" / a).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "www" / "index.html").write_text(index_html)
    return root


def write_aci(work: Path, manifest: str | Mapping[str, object], name: str) -> Path:
    """An (uncompressed) ACI work/name: `manifest` (JSON text, or an object to encode)
    and the tree at work/rootfs."""
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    (work / "manifest").write_text(text)
    aci = work / name
    with tarfile.open(aci, "w") as tar:
        tar.add(work / "manifest", arcname="manifest")
        tar.add(work / "rootfs", arcname="rootfs")
    return aci


_LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


def _libraries(binary: Path) -> list[str]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True)
    return sorted({m.group(1) for m in map(_LDD_LINE.search, out.stdout.splitlines()) if m})


def redis_rootfs(dest: Path) -> Path:
    """/usr/bin/redis-server and redis-cli with their libraries and the dynamic loader."""
    binaries = {"redis-server": Path("/usr/bin/redis-server"),
                "redis-cli": Path("/usr/bin/redis-cli")}
    (dest / "usr/bin").mkdir(parents=True, exist_ok=True)
    libs: set[str] = set()
    for name, path in binaries.items():
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: apt-get install redis-server")
        # redis-server is a link to redis-check-rdb and picks its mode from argv[0]: copy
        # the real file under the name redis-server.
        shutil.copy(path.resolve(), dest / "usr/bin" / name)
        libs.update(_libraries(path))
    for lib in libs:
        target = dest / lib.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(lib).resolve(), target)
    _write_etc(dest)
    (dest / "data").mkdir(exist_ok=True)
    return dest


# ---------------------------------------------------------------- layers and layouts


def _tarinfo_fixed(ti: tarfile.TarInfo) -> tarfile.TarInfo:
    ti.mtime = FIXED_MTIME
    ti.uname = ti.gname = ""
    return ti


def tar_directory(root: Path) -> bytes:
    """A deterministic tar of root's contents (sorted, fixed mtimes, no owner names)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = Path(dirpath) / name
                arc = str(full.relative_to(root))
                ti = _tarinfo_fixed(tf.gettarinfo(str(full), arcname=arc))
                if ti.isreg():
                    with open(full, "rb") as f:
                        tf.addfile(ti, f)
                else:
                    tf.addfile(ti)
    return buf.getvalue()


def tar_dict(layer: DictLayer) -> bytes:
    """A tar of a dict layer; implied parent directories are added as 0755 dirs."""
    entries: dict[str, Entry] = {}
    for path, value in layer.items():
        p = path.strip("/")
        parts = p.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), Entry(kind="dir", mode=0o755))
        entries[p] = value if isinstance(value, Entry) else Entry(data=value)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in sorted(entries):
            e = entries[name]
            ti = _tarinfo_fixed(tarfile.TarInfo(name))
            ti.mode, ti.uid, ti.gid = e.mode, e.uid, e.gid
            if e.kind == "file":
                ti.size = len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                       "hardlink": tarfile.LNKTYPE}[e.kind]
            ti.linkname = e.target
            tf.addfile(ti)
    return buf.getvalue()


def compress(data: bytes, how: Compression) -> bytes:
    if how is Compression.GZIP:
        return gzip.compress(data, compresslevel=6, mtime=0)
    if how is Compression.ZSTD:
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _put_blob(layout: Path, data: bytes) -> str:
    digest = _sha256(data)
    path = layout / "blobs/sha256" / digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return digest


def _descriptor(media_type: str, digest: str, size: int, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


@dataclass(frozen=True)
class RawLayer:
    """A layer blob as stored (compressed as `compression` says) and its diff ID."""

    blob: bytes
    diff_id: str  # sha256 of the uncompressed tar
    compression: Compression

    @classmethod
    def of(cls, tar: bytes, how: Compression) -> RawLayer:
        return cls(compress(tar, how), _sha256(tar), how)


def _image_manifest(
    layout: Path, layers: Sequence[RawLayer], config: ImageConfigSpec, os_name: str,
    arch: str,
) -> dict[str, object]:
    layer_descs = [_descriptor(x.compression.media_type, _put_blob(layout, x.blob),
                               len(x.blob)) for x in layers]
    cfg = {
        "created": CREATED,
        "architecture": arch,
        "os": os_name,
        "config": config.to_json(),
        "rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in layers]},
        "history": [{"created": CREATED, "created_by": "pyrkt tests"} for _ in layers],
    }
    cfg_blob = json.dumps(cfg, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": _descriptor(MT_CONFIG, _put_blob(layout, cfg_blob), len(cfg_blob)),
        "layers": layer_descs,
    }
    blob = json.dumps(manifest, sort_keys=True).encode()
    return _descriptor(MT_MANIFEST, _put_blob(layout, blob), len(blob),
                       platform={"architecture": arch, "os": os_name})


def oci_layout(
    layout_dir: Path,
    layers: Sequence[Path | DictLayer],
    config: ImageConfigSpec,
    tag: str = "latest",
    *,
    compression: str | Sequence[str] = "gzip",
    platforms: Sequence[str] = ("linux/amd64",),
) -> str:
    """Add an image tagged `tag` to the OCI layout at layout_dir; return its digest.

    compression is one value for every layer or one per layer. With more than one
    platform, the tag names an image index of one manifest per platform, and each
    platform's image gets an extra top layer with /etc/platform = "linux/<arch>", so a
    test can tell which one a client picked. Re-using a tag replaces it.
    """
    comps_in = [compression] * len(layers) if isinstance(compression, str) else compression
    if len(comps_in) != len(layers):
        raise ValueError("one compression per layer")
    comps = [Compression(c) for c in comps_in]
    tars = [tar_directory(x) if isinstance(x, Path) else tar_dict(x) for x in layers]
    layout_dir.mkdir(parents=True, exist_ok=True)
    (layout_dir / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    raw = [RawLayer.of(t, how) for t, how in zip(tars, comps, strict=True)]
    if len(platforms) == 1:
        os_name, arch = platforms[0].split("/", 1)
        top = _image_manifest(layout_dir, raw, config, os_name, arch)
        top.pop("platform")
    else:
        descs = []
        for plat in platforms:
            os_name, arch = plat.split("/", 1)
            marker = RawLayer.of(tar_dict({"etc/platform": f"{plat}\n".encode()}),
                                 comps[-1] if comps else Compression.GZIP)
            descs.append(_image_manifest(layout_dir, [*raw, marker], config, os_name, arch))
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": descs}
        blob = json.dumps(index, sort_keys=True).encode()
        top = _descriptor(MT_INDEX, _put_blob(layout_dir, blob), len(blob))
    _tag(layout_dir, top, tag)
    return str(top["digest"])


def _tag(layout_dir: Path, top: dict[str, object], tag: str) -> None:
    """Point `tag` in layout_dir's index.json at the manifest or index `top`."""
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    index_path = layout_dir / "index.json"
    outer: dict[str, object] = {"schemaVersion": 2, "manifests": []}
    if index_path.exists():
        outer = json.loads(index_path.read_text())
    kept = [
        m for m in outer["manifests"]  # type: ignore[attr-defined]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
    ]
    outer["manifests"] = [*kept, top]
    index_path.write_text(json.dumps(outer, sort_keys=True))


def raw_layout(layout_dir: Path, layers: Sequence[RawLayer], config: ImageConfigSpec,
               tag: str = "latest") -> str:
    """Add a linux/amd64 image of ready-made layer blobs to the OCI layout at
    layout_dir, tagged `tag`; return its manifest digest."""
    layout_dir.mkdir(parents=True, exist_ok=True)
    (layout_dir / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    top = _image_manifest(layout_dir, layers, config, "linux", "amd64")
    top.pop("platform")
    _tag(layout_dir, top, tag)
    return str(top["digest"])


def gzip_bomb(size: int, name: str = "zeros") -> RawLayer:
    """A gzip layer of one file of `size` zero bytes (size a multiple of 1 MiB): about
    size/1000 compressed (2 GiB -> ~2 MiB). Made of concatenated gzip members (allowed
    by gzip, followed by decompressors) so the same 1 MiB member is built once."""
    mib = 1 << 20
    assert size % mib == 0
    ti = _tarinfo_fixed(tarfile.TarInfo(name))
    ti.size, ti.mode = size, 0o644
    header = ti.tobuf(format=tarfile.PAX_FORMAT)
    zeros = bytes(mib)
    member = gzip.compress(zeros, compresslevel=9, mtime=0)
    tail = bytes(2 * tarfile.BLOCKSIZE)  # size is block-aligned: no padding, end blocks
    h = hashlib.sha256(header)
    for _ in range(size // mib):
        h.update(zeros)
    h.update(tail)
    blob = b"".join([gzip.compress(header, mtime=0), member * (size // mib),
                     gzip.compress(tail, mtime=0)])
    return RawLayer(blob, "sha256:" + h.hexdigest(), Compression.GZIP)


def bulk_layout(
    layout_dir: Path,
    *,
    total_mb: int = 100,
    layers: int = 4,
    tag: str = "latest",
    compression: str = "gzip",
    seed: int = 0,
) -> str:
    """A big multi-layer image (for benchmarks): busybox, then `layers` layers of 1 MiB
    files adding up to about total_mb MiB, half random bytes (incompressible), half text
    (compressible), from a seeded generator so the image is the same every time."""
    import random

    rng = random.Random(seed)
    root = busybox_rootfs(layout_dir.parent / f"{layout_dir.name}-busybox")
    data_layers: list[DictLayer] = []
    per_layer = max(1, total_mb // max(1, layers))
    for n in range(layers):
        files: dict[str, bytes | Entry] = {}
        for i in range(per_layer):
            if i % 2 == 0:
                blob = rng.randbytes(1 << 20)
            else:
                line = f"layer {n} file {i} {rng.random()}\n".encode()
                blob = (line * ((1 << 20) // len(line) + 1))[: 1 << 20]
            files[f"data/layer{n}/file{i:04d}"] = blob
        data_layers.append(files)
    return oci_layout(layout_dir, [root, *data_layers], BULK_CONFIG, tag,
                      compression=compression)


BULK_CONFIG = ImageConfigSpec(cmd=["/bin/sh"], env=["PATH=/usr/bin:/bin"])
