"""The local image store under `DIR/cas`.

Layout:

    cas/db/index.sqlite   one row per image (id, name, labels, kind, manifest, import
                          time, last use, size) and remote refs -> image id
    cas/blobs/<id>        the image as an uncompressed ACI tar (images imported as ACIs)
    cas/trees/<id>/       the rendered tree: `manifest` + `rootfs/` (what pods use)
    cas/tmp/              staging; each staging dir is flocked by the process filling it
    cas/locks/            flock files: `store` (index + renames), `render-<id>`, `<id>`

Image IDs are `sha512-<64 hex>`: as in rkt, the first half of a SHA-512 in hex. For an
ACI, as in rkt, it is the hash of the uncompressed ACI tar, and the tar itself is kept,
so `rkt image export` gives back the same bytes and re-importing them gives the same ID.
Docker and OCI images are never turned into an ACI tar on fetch (that would cost a
second copy of every byte): their ID is the hash of a canonical JSON document (sorted
keys, no spaces):

    {"layers": [<layer digest>, ...], "manifest": <appc image manifest>, "v": 1}

(layer digests as the registry named them, in order) and their content is the rendered
tree itself, built in staging by applying the layers. `rkt image export` of such an image
writes a deterministic ACI tar of the tree; `rkt fetch` of that file imports it as an
ACI (a new ID: the tar's hash, as rkt would compute it).

Crash safety: content is written to staging (blobs fsynced), moved into place with
rename, and the index row is inserted last in one sqlite transaction; so a killed fetch
leaves at most unreferenced staging and never a visible half image. A SIGINT or SIGTERM
removes the staging on the way out (`pyrkt.interrupt`); what a SIGKILL left is removed
by the next process that stages anything (`sweep_staging`: the staging dirs whose flock
nobody holds) and by `rkt image gc`. Concurrency: the index and the renames are guarded
by the `store` flock; renders by a per-image flock; a rendered tree appears atomically
(rename), so the fast path of `render()` is one stat; it disappears atomically too
(renamed into `tmp/`, then deleted).

Removal, as in rkt: `rkt image rm` removes the image (index row, blob) at once, but the
rendered tree of an image that a pod still uses stays (`remove(id, keep_tree=True)`)
until `rkt image gc` finds no pod using it (`gc_storage(keep=...)`).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Collection, Iterator
from pathlib import Path

from pyrkt import datadir, log
from pyrkt.errors import PERMISSION_HINT, Ambiguous, NotFound, RktError
from pyrkt.linux.files import fsync_dir, try_flock
from pyrkt.record import record

# not `from typing import TYPE_CHECKING`: importing typing costs ~4 ms on `rkt run`
TYPE_CHECKING = False

# `rkt run` of an image already in the store only queries the index and stats a tree:
# what imports, renders and removals need is imported where it is used.
if TYPE_CHECKING:
    import hashlib
    from typing import Any

    from pyrkt.appc.image import ImageManifest
    from pyrkt.image.layers import ByteStream

ID_PREFIX = "sha512-"
ID_HEX_LEN = 64
TOUCH_INTERVAL = 60.0  # seconds: `last used` is kept to this precision
_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    kind TEXT NOT NULL,
    manifest TEXT NOT NULL,
    import_time REAL NOT NULL,
    last_used REAL NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS images_name ON images(name);
CREATE TABLE IF NOT EXISTS remotes (
    ref TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    meta TEXT NOT NULL,
    fetched REAL NOT NULL
);
"""


class ImageKind(enum.StrEnum):
    ACI = "aci"  # kept as an ACI blob; rendered on first use
    TREE = "tree"  # docker / OCI: the rendered tree is the content


@record
class ImageInfo:
    """One row of the image index."""

    id: str
    name: str
    labels: tuple[tuple[str, str], ...]
    kind: ImageKind
    import_time: float
    last_used: float
    size: int

    def label(self, name: str) -> str | None:
        return dict(self.labels).get(name)

    @property
    def name_version(self) -> str:
        """`name:version` as rkt listed it (just `name` without a version label)."""
        v = self.label("version")
        return f"{self.name}:{v}" if v else self.name


def image_id_of(h: hashlib._Hash) -> str:
    """rkt's image key: `sha512-` + the first 64 hex digits of the SHA-512."""
    return ID_PREFIX + h.hexdigest()[:ID_HEX_LEN]


def short_id(image_id: str, hexlen: int = 12) -> str:
    return image_id[: len(ID_PREFIX) + hexlen]


def canonical_id(doc: Any) -> str:
    """sha512-<hex> of a JSON document in canonical form (sorted keys, no spaces)."""
    import hashlib

    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return image_id_of(hashlib.sha512(raw))


def tree_image_id(manifest: ImageManifest, layer_digests: list[str]) -> str:
    """The ID of a docker/OCI image (see the module docstring)."""
    return canonical_id({"layers": layer_digests, "manifest": manifest.to_dict(), "v": 1})


@contextlib.contextmanager
def flocked(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on path (created if needed, writable by the rkt group,
    whose members fetch too) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, datadir.SHARED_FILE_MODE)
    try:
        datadir.share_file(fd)
        if blocking:
            fcntl.flock(fd, fcntl.LOCK_EX)
        elif not try_flock(fd):
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _lock_linked(path: Path, *, wait: bool = True) -> int | None:
    """An fd holding an exclusive flock on the file linked at path (created if missing);
    None if not `wait` and another process holds it.

    The lock counts only while its file is still linked at that name: a sweeper may
    remove the name between our open and our flock, so the owner retries on a fresh
    file, and a sweeper that locked an unlinked or replaced file lets it go.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, datadir.SHARED_FILE_MODE)
        datadir.share_file(fd)  # as `flocked`: rkt group members fetch (and sweep) too
        if wait:
            fcntl.flock(fd, fcntl.LOCK_EX)
        elif not try_flock(fd):
            os.close(fd)
            return None
        try:
            linked = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            linked = False
        if linked:
            return fd
        os.close(fd)
        if not wait:
            return None


class Store:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "cas"
        self.blobs = self.root / "blobs"
        self.trees = self.root / "trees"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"
        self._conn: sqlite3.Connection | None = None
        self._swept = False

    # -- plumbing --------------------------------------------------------------------

    def _ensure(self) -> None:
        try:
            datadir.make(self.root.parent, "cas/db", "cas/blobs", "cas/trees", "cas/tmp",
                         "cas/locks")  # fmt: skip
        except PermissionError as e:
            raise RktError(f"cannot open the image store {self.root}: permission denied",
                           PERMISSION_HINT) from e  # fmt: skip

    @property
    def db(self) -> sqlite3.Connection:
        if self._conn is None:
            path = self.root / "db" / "index.sqlite"
            try:
                self._ensure()
                conn = sqlite3.connect(path, timeout=60, isolation_level=None)
                conn.execute("PRAGMA busy_timeout = 60000")
                # A rollback journal (not WAL: closing the last WAL connection
                # checkpoints, ~10 ms on every `rkt` command). Commits stay atomic.
                conn.execute("PRAGMA synchronous = NORMAL")
                if not conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE name = 'remotes'"
                ).fetchone():
                    conn.executescript(f"BEGIN;{_SCHEMA}COMMIT;")  # one transaction
                    if os.stat(path).st_uid == os.geteuid():
                        os.chmod(path, datadir.SHARED_FILE_MODE)  # the group writes too
            except PermissionError as e:
                raise RktError(f"cannot open the image store {path}: permission denied",
                               PERMISSION_HINT) from e  # fmt: skip
            except (OSError, sqlite3.Error) as e:
                if not os.access(self.root, os.R_OK | os.X_OK):
                    raise RktError(f"cannot open the image store {path}: permission denied",
                                   PERMISSION_HINT) from e  # fmt: skip
                raise RktError(f"cannot open the image store {path}: {e}",
                               "is --dir right, and are you root?") from e  # fmt: skip
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def lock(self, name: str = "store") -> contextlib.AbstractContextManager[bool]:
        self.locks.mkdir(parents=True, exist_ok=True)
        return flocked(self.locks / name)

    @contextlib.contextmanager
    def staging(self, what: str) -> Iterator[Path]:
        """A fresh staging dir, flocked while in use, removed afterwards, also when a
        SIGINT, SIGTERM or SIGHUP ends the process meanwhile (`pyrkt.interrupt`: they
        unwind it). The first staging of a process first removes what killed processes
        left (`sweep_staging`)."""
        import secrets
        import shutil

        from pyrkt.interrupt import terminate_raises

        with terminate_raises():
            self._ensure()
            if not self._swept:
                self._swept = True
                self.sweep_staging()
            path = self.tmp / f"{what}-{os.getpid()}-{secrets.token_hex(8)}"
            lockf = path.with_name(path.name + ".lock")
            fd = _lock_linked(lockf)
            assert fd is not None  # waited for it
            try:
                path.mkdir()
                try:
                    yield path
                finally:
                    shutil.rmtree(path, ignore_errors=True)
                    lockf.unlink(missing_ok=True)
            finally:
                os.close(fd)

    @contextlib.contextmanager
    def space_errors(self, what: str) -> Iterator[None]:
        """A "no space left on device" from the block (however wrapped: a layer error,
        a download thread's, sqlite's) re-raised as one line naming the store and
        `what` (`limits.NoSpace`)."""
        try:
            yield
        except Exception as e:
            from pyrkt.image.limits import out_of_space_error

            err = out_of_space_error(e, self.root, what)
            if err is None:
                raise
            raise err from e

    def sweep_staging(self) -> list[str]:
        """Remove the staging dirs (and lone lock files) of processes that are gone.

        A staging dir is in use exactly while its `.lock` is flocked: the owner takes the
        lock before the dir exists and removes both before letting go. A lock is taken
        here without waiting and only trusted while its file is still the one linked at
        that name (see `_lock_linked`), so a concurrent fetch never loses its staging.
        """
        import shutil

        removed: list[str] = []
        try:
            names = {e.name for e in os.scandir(self.tmp)}
        except OSError:  # no store yet, or not ours to clean (not root)
            return removed
        for name in sorted(names):
            base = name.removesuffix(".lock")
            if name != base and base in names:
                continue  # handled with its dir
            lockf = self.tmp / (base + ".lock")
            try:
                fd = _lock_linked(lockf, wait=False)
            except OSError:
                continue
            if fd is None:
                continue  # in use
            try:
                entry = self.tmp / base
                if os.path.lexists(entry):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(str(entry))
                lockf.unlink(missing_ok=True)
            finally:
                os.close(fd)
        if removed:
            log.debug(f"image store: removed {len(removed)} abandoned staging dir(s)")
        return removed

    # -- queries ---------------------------------------------------------------------

    @staticmethod
    def _info(row: tuple[Any, ...]) -> ImageInfo:
        return ImageInfo(
            id=row[0],
            name=row[1],
            labels=tuple((k, v) for k, v in json.loads(row[2])),
            kind=ImageKind(row[3]),
            import_time=row[4],
            last_used=row[5],
            size=row[6],
        )

    _COLS = "id, name, labels, kind, import_time, last_used, size"

    def get(self, image_id: str) -> ImageInfo | None:
        row = self.db.execute(
            f"SELECT {self._COLS} FROM images WHERE id = ?", (image_id,)
        ).fetchone()
        return self._info(row) if row else None

    def all_images(self) -> list[ImageInfo]:
        rows = self.db.execute(f"SELECT {self._COLS} FROM images ORDER BY import_time")
        return [self._info(r) for r in rows]

    def resolve(self, ref: str) -> ImageInfo:
        """An image by ID (or unambiguous ID prefix) or by `name[:version]`."""
        if ref.startswith(ID_PREFIX):  # rkt's ResolveKey, with its messages
            if len(ref) < len(ID_PREFIX) + 2:
                raise NotFound("image ID too short")
            key = ref[: len(ID_PREFIX) + ID_HEX_LEN]
            rows = self.db.execute(
                f"SELECT {self._COLS} FROM images WHERE id LIKE ? ESCAPE '\\'",
                (key.replace("_", "\\_").replace("%", "\\%") + "%",),
            ).fetchall()
            if not rows:
                raise NotFound("no image IDs found")
            if len(rows) > 1:
                raise Ambiguous(f'ambiguous image ID: "{key}"')
            return self._info(rows[0])
        name, version = split_name_version(ref)
        rows = self.db.execute(
            f"SELECT {self._COLS} FROM images WHERE name = ? ORDER BY import_time DESC",
            (name,),
        ).fetchall()
        if not rows and "/" not in name:
            rows = self.db.execute(
                f"SELECT {self._COLS} FROM images WHERE name LIKE ? ESCAPE '\\' "
                "ORDER BY import_time DESC",
                ("%/" + name.replace("_", "\\_").replace("%", "\\%"),),
            ).fetchall()
        for row in rows:
            info = self._info(row)
            if version is None or info.label("version") == version:
                return info
        raise NotFound(f"no image named {ref!r} in the store")

    def manifest_bytes(self, image_id: str) -> bytes:
        row = self.db.execute("SELECT manifest FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise NotFound(f"no image with ID {image_id!r} in the store")
        return str(row[0]).encode()

    def manifest(self, image_id: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.manifest_bytes(image_id))
        return data

    def touch(self, image_id: str) -> None:
        self.db.execute("UPDATE images SET last_used = ? WHERE id = ?", (time.time(), image_id))

    # -- remote refs -----------------------------------------------------------------

    def remote_get(self, ref: str) -> tuple[str, dict[str, Any]] | None:
        row = self.db.execute(
            "SELECT r.image_id, r.meta FROM remotes r JOIN images i ON i.id = r.image_id "
            "WHERE r.ref = ?",
            (ref,),
        ).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def remote_put(self, ref: str, image_id: str, meta: dict[str, Any] | None = None) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO remotes (ref, image_id, meta, fetched) VALUES (?, ?, ?, ?)",
            (ref, image_id, json.dumps(meta or {}), time.time()),
        )

    # -- imports ---------------------------------------------------------------------

    def _insert(self, image_id: str, m: ImageManifest, raw: bytes, kind: ImageKind,
                size: int) -> None:  # fmt: skip
        now = time.time()
        labels = json.dumps([[x.name, x.value] for x in m.labels])
        self.db.execute(
            "INSERT INTO images (id, name, labels, kind, manifest, import_time, last_used,"
            " size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (image_id, m.name, labels, kind.value, raw.decode(), now, now, size),
        )

    def import_aci(self, src: Path | ByteStream, *, what: str = "") -> str:
        """Import an ACI file or stream (plain, gzip or zstd); returns its image ID.
        Its uncompressed size is metered (`limits.Budget`; `what` names it in errors)."""
        import hashlib

        from pyrkt.appc.image import load_image_manifest
        from pyrkt.image.limits import Budget
        from pyrkt.image.streams import decompressed_chunks

        with self.staging("aci") as stage:
            blob = stage / "blob"
            h = hashlib.sha512()
            size = 0
            budget = Budget(self.root, what or "the ACI")
            with contextlib.ExitStack() as es:
                raw: ByteStream = (
                    es.enter_context(open(src, "rb")) if isinstance(src, Path) else src
                )
                chunks = decompressed_chunks(raw)
                es.callback(chunks.close)
                out = es.enter_context(open(blob, "wb"))
                try:
                    for buf in budget.meter(chunks):
                        h.update(buf)
                        out.write(buf)
                        size += len(buf)
                except RktError:
                    raise
                except (OSError, EOFError, ValueError) as e:
                    raise RktError(f"cannot read the ACI: {e}") from e
                except Exception as e:  # zstandard.ZstdError and the like
                    raise RktError(f"cannot read the ACI: corrupt data ({e})") from e
                out.flush()
                os.fsync(out.fileno())
            raw_manifest = read_aci_manifest(blob)
            m = load_image_manifest(raw_manifest)
            if m.dependencies:
                raise RktError(
                    f"image {m.name!r} has dependencies; layered ACIs are not supported"
                )
            image_id = image_id_of(h)
            with self.lock():
                if self.get(image_id) is not None:
                    log.debug(f"image {short_id(image_id)} already in the store")
                    return image_id
                os.rename(blob, self.blobs / image_id)
                fsync_dir(self.blobs)
                self._insert(image_id, m, raw_manifest, ImageKind.ACI, size)
            return image_id

    def commit_tree(self, image_id: str, staged: Path, manifest: ImageManifest,
                    size: int) -> None:  # fmt: skip
        """Move a staged tree (`rootfs/` filled in) into place and index it."""
        raw = manifest.to_json().encode()
        mpath = staged / "manifest"
        with open(mpath, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        with self.lock():
            if self.get(image_id) is not None:
                return
            dest = self.trees / image_id
            if dest.is_dir():
                # kept for pods after `rkt image rm`, or left by a crash after the
                # rename: trees appear and disappear by rename only, so it is complete,
                # and its ID says it holds what was staged. Pods may be using it.
                log.debug(f"image {short_id(image_id)}: reusing its rendered tree")
            else:
                os.rename(staged, dest)
                fsync_dir(self.trees)
            self._insert(image_id, manifest, raw, ImageKind.TREE, size)

    # -- render ----------------------------------------------------------------------

    def render(self, image_id: str) -> Path:
        """The image's rendered tree (`rootfs/` + `manifest`); read-only for callers."""
        tree = self.trees / image_id
        info = self.get(image_id)
        if info is None:
            raise NotFound(f"no image with ID {image_id!r} in the store")
        if not tree.is_dir():
            if info.kind is ImageKind.TREE:
                raise RktError(
                    f"image {short_id(image_id)}: rendered tree is missing",
                    "remove it with 'rkt image rm' and fetch it again",
                )
            with self.lock(f"render-{image_id}"):
                if not tree.is_dir():
                    self._render_aci(image_id, tree)
        if time.time() - info.last_used > TOUCH_INTERVAL:
            self.touch(image_id)  # a write: skipped when recent, renders stay ~1 ms
        return tree

    def _render_aci(self, image_id: str, tree: Path) -> None:
        from pyrkt.image.layers import apply_layer

        with self.staging("render") as stage, open(self.blobs / image_id, "rb") as f:
            apply_layer(f, stage, whiteouts=False)
            (stage / "rootfs").mkdir(exist_ok=True)
            os.rename(stage, tree)
            fsync_dir(self.trees)

    def blob_path(self, image_id: str) -> Path | None:
        p = self.blobs / image_id
        return p if p.is_file() else None

    # -- removal ---------------------------------------------------------------------

    def remove(self, image_id: str, *, keep_tree: bool = False) -> None:
        """Remove an image from the index and its content from the store.

        `keep_tree`: leave its rendered tree (as rkt left its tree store) for the pods
        that still use it; `gc_storage` removes it once no pod does.
        """
        with self.lock():
            cur = self.db.execute("DELETE FROM images WHERE id = ?", (image_id,))
            if cur.rowcount == 0:
                raise NotFound(f"no image with ID {image_id!r} in the store")
            self.db.execute("DELETE FROM remotes WHERE image_id = ?", (image_id,))
            (self.blobs / image_id).unlink(missing_ok=True)
            if not keep_tree:
                self._discard_tree(self.trees / image_id)

    def _discard_tree(self, tree: Path) -> None:
        """Delete a tree: renamed away first so that it disappears at once, whole."""
        if not tree.exists():
            return
        with self.staging("rm") as doomed:
            os.rename(tree, doomed / "tree")

    def gc_storage(self, keep: Collection[str] = ()) -> list[str]:
        """Remove abandoned staging and content no index row references; the trees of
        the image IDs in `keep` (those pods use) stay."""
        self._ensure()
        self._swept = True
        removed = self.sweep_staging()
        with self.lock():
            known = {r[0] for r in self.db.execute("SELECT id FROM images")}
            for entry in self.blobs.iterdir():
                if entry.name not in known:
                    entry.unlink(missing_ok=True)
                    removed.append(str(entry))
            for entry in self.trees.iterdir():
                if entry.name not in known and entry.name not in keep:
                    self._discard_tree(entry)
                    removed.append(str(entry))
        return removed


def split_name_version(ref: str) -> tuple[str, str | None]:
    """`example.com/app:1.0` -> ('example.com/app', '1.0'); no version -> None."""
    name, sep, version = ref.rpartition(":")
    if sep and name and "/" not in version:
        return name, version
    return ref, None


def read_aci_manifest(tar_path: Path) -> bytes:
    """The `manifest` member of an uncompressed ACI tar (whose every member is checked
    to lie within the file: a truncated ACI is refused here, not at first use)."""
    import tarfile

    manifest: bytes | None = None
    size = tar_path.stat().st_size
    try:
        with tarfile.open(tar_path, "r:") as tf:
            for m in tf:
                if m.offset_data + (m.size if m.isreg() else 0) > size:
                    raise RktError(f"not a valid ACI: truncated in {m.name!r}")
                if manifest is None and m.isreg() and \
                        m.name.strip("/").removeprefix("./") == "manifest":  # fmt: skip
                    f = tf.extractfile(m)
                    manifest = f.read() if f is not None else None
    except tarfile.TarError as e:
        raise RktError(f"not a valid ACI: {e}") from e
    if manifest is None:
        raise RktError("not a valid ACI: no 'manifest' file in the archive")
    return manifest
