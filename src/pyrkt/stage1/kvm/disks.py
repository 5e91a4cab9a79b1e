"""The apps' root filesystems as disks (docs/kvm.md "Root filesystems on disks").

With `rootfs=block` (pod annotation `coreos.com/rkt/stage1/kvm/rootfs`, or the stage1
flag `--kvm-rootfs=block|9p`; the default with QEMU: `default_kind`) each app's rootfs
is a virtio-blk disk instead of a folder of the 9p share: the image's ext4 image
(`pyrkt.image.fsimage`, built once per image beside its rendered tree, opened read-only
by every pod of it) under the pod's own
qcow2 layer (`POD/kvm/disks/APP.qcow2`, copy-on-write: what the app writes, and only
that; a copy of an empty one made once per image), which the guest mounts at the app's
rootfs path. Each `empty` volume is a disk too (an empty ext4 under a qcow2 layer:
FIFOs and sockets work there), mounted once in the guest and bound into the apps that
mount it; `host` volumes stay 9p shares (the host's data is seen both ways). Nothing is
attached or mounted on the host: QEMU opens the files, and the layers go with the pod
folder at `rkt gc`.

A pod restored from a VM template has its disks behind the template's disk slots
(templates/shape.py); `attach_qmp` hot-plugs those that do not fit into the running VM
(QMP `blockdev-add` + `device_add`, ACPI PCI hot-plug on `-M pc`). The guest finds each
disk by its serial number either way.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pyrkt import log, proc
from pyrkt.errors import RktError
from pyrkt.record import field, record
from pyrkt.stage1.kvm.finish import kvm_dir
from pyrkt.stage1.kvm.vm import Disk
from pyrkt.stage1.plan import PodPlan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Qmp(Protocol):
        """What attach_qmp needs of a QMP session (pyrkt.stage1.kvm.qmp.Qmp)."""

        def execute(self, command: str, args: dict[str, Any] | None = None) -> Any: ...

ANN_ROOTFS = "coreos.com/rkt/stage1/kvm/rootfs"
FLAG_ROOTFS = "kvm-rootfs"
QEMU_IMG = "qemu-img"
RECORD = "disks.json"
CACHE_DIR = "kvm-disks"  # under DIR/cache: empty volumes' images, empty layers


class RootfsKind(enum.StrEnum):
    BLOCK = "block"
    NINEP = "9p"


def default_kind(pod: Path, plan: PodPlan, hypervisor: str) -> RootfsKind:
    """Disks (bench/kvm_fileio.py: file I/O 50x faster than 9p, the same start) with
    QEMU when every app has an image tree to make its disk from and qemu-img is there;
    else 9p (lkvm has no disks here; a pod folder made without stage0 has no trees; a
    stage1 bundling its QEMU may run on a host without qemu-img)."""
    import shutil

    if hypervisor != "qemu" or shutil.which(QEMU_IMG) is None:
        return RootfsKind.NINEP
    for app in plan.apps:
        try:
            if not app_tree(pod, app.name).is_dir():
                return RootfsKind.NINEP
        except OSError:
            return RootfsKind.NINEP
    return RootfsKind.BLOCK


def rootfs_kind(annotations: Mapping[str, str], flag: str | None = None) -> RootfsKind | None:
    """The pod's rootfs kind: the stage1 flag, else the pod annotation, else None (the
    default: default_kind)."""
    for value, what in ((flag, f"--{FLAG_ROOTFS}"), (annotations.get(ANN_ROOTFS), ANN_ROOTFS)):
        if value is None:
            continue
        try:
            return RootfsKind(value)
        except ValueError:
            raise RktError(
                f"{what}={value!r}: not a rootfs kind",
                "use " + " or ".join(k.value for k in RootfsKind),
            ) from None
    return None


def disk_id(index: int) -> str:
    """The disk's node name and serial number: short (virtio-blk serials hold 20
    bytes) and a shell word (the guest's script matches it)."""
    return f"rkt-d{index}"


def disks_dir(pod: Path) -> Path:
    return kvm_dir(pod) / "disks"


def app_tree(pod: Path, app: str) -> Path:
    """The app image's rendered tree in the store, as stage0 recorded it (the pod
    folder's appsinfo is the host's: no guest writes it)."""
    return Path((pod / "appsinfo" / app / "tree").read_text().strip())


def layer_path(pod: Path, app: str) -> Path:
    return disks_dir(pod) / f"{app}.qcow2"


def make_layer(layer: Path, backing: Path, backing_format: str = "raw") -> None:
    """An empty qcow2 layer over backing (copy-on-write: it holds only what is written)."""
    layer.unlink(missing_ok=True)
    try:
        proc.run([QEMU_IMG, "create", "-q", "-f", "qcow2", "-F", backing_format,
                  "-b", backing, "-o", "cluster_size=65536", layer],
                 capture=True)  # fmt: skip
    except FileNotFoundError as e:
        raise RktError(f"{QEMU_IMG} not found", "install qemu-utils") from e


@record
class PodDisks:
    apps: dict[str, Disk] = field(default_factory=dict)  # by app name
    volumes: dict[str, Disk] = field(default_factory=dict)  # by volume name

    def all(self) -> tuple[Disk, ...]:
        return (*self.apps.values(), *self.volumes.values())


def new_layer(layer: Path, base: Path, cache: Path) -> None:
    """An empty qcow2 layer over the raw image base, at layer: a copy of one made once
    per base (its path, size, mtime and inode) into cache (200 KiB copied instead of a
    `qemu-img` run on every start)."""
    import hashlib
    import shutil

    st = base.stat()  # a base rebuilt (its tree removed, then fetched again) is another
    key = f"{base}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}".encode()
    first = cache / f"layer-{hashlib.sha256(key).hexdigest()[:24]}.qcow2"
    if not first.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = first.with_name(f".{first.name}.{os.getpid()}.tmp")
        make_layer(tmp, base)
        os.replace(tmp, first)
    shutil.copyfile(first, layer)


QCOW2_MAGIC = b"QFI\xfb"
QCOW2_HEADER_MAX = 65536  # where a backing file's name can be, at most (sweep_layers)


def backing_of(layer: Path) -> Path | None:
    """The backing file a qcow2 layer names in its header (bounded reads), or None."""
    with layer.open("rb") as f:
        head = f.read(20)
        if len(head) < 20 or head[:4] != QCOW2_MAGIC:
            return None
        offset = int.from_bytes(head[8:16], "big")
        size = int.from_bytes(head[16:20], "big")
        if not offset or not size or offset + size > QCOW2_HEADER_MAX:
            return None
        f.seek(offset)
        return Path(os.fsdecode(f.read(size)))


def sweep_layers(cache: Path) -> list[Path]:
    """Remove the empty layers new_layer keeps in cache whose base is gone or was built
    again after them (its image removed by `rkt image gc`, or fetched again): no pod
    can use them any more (a new base has another key). Returns what was removed."""
    removed = []
    for layer in sorted(cache.glob("layer-*.qcow2")):
        try:
            base = backing_of(layer)
            stale = base is None or base.stat().st_mtime_ns > layer.stat().st_mtime_ns
        except FileNotFoundError:
            stale = True
        except OSError:
            continue
        if stale:
            layer.unlink(missing_ok=True)
            removed.append(layer)
    return removed

def pod_disks(pod: Path, plan: PodPlan, cache: Path) -> PodDisks:
    """The pod's disks: app_disks and volume_disks (cache: where the empty volumes'
    images and the empty layers are kept)."""
    apps = app_disks(pod, plan, cache)
    return PodDisks(apps, volume_disks(pod, plan, cache, len(apps)))


def app_disks(pod: Path, plan: PodPlan, cache: Path) -> dict[str, Disk]:
    """Each app's disk, by app name: its image's ext4 image (built on first use) under
    a new qcow2 layer in the pod folder. Recorded in POD/kvm/disks.json (for `rkt
    export`: the pod folder is the host's, the guest writes only the layers' content)."""
    from pyrkt.image import fsimage

    disks_dir(pod).mkdir(parents=True, exist_ok=True)
    out: dict[str, Disk] = {}
    for i, app in enumerate(plan.apps):
        base = fsimage.disk_image(app_tree(pod, app.name))
        layer = layer_path(pod, app.name)
        new_layer(layer, base, cache)
        out[app.name] = Disk(disk_id(i), base, (layer,))
    record = {name: {"id": d.id, "base": str(d.base), "layer": str(d.layers[-1])}
              for name, d in out.items()}
    tmp = kvm_dir(pod) / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, kvm_dir(pod) / RECORD)
    log.debug(f"kvm: rootfs on disks: {', '.join(f'{a}={d.id}' for a, d in out.items())}")
    return out


def volume_disks(pod: Path, plan: PodPlan, cache: Path, first: int) -> dict[str, Disk]:
    """Each `empty` volume's disk, by volume name (ids from disk_id(first) on): an empty
    ext4 whose root has the mode and owner stage0 gave the volume's folder (built once
    per mode and owner into cache), under a new qcow2 layer in the pod folder. Not the
    implicit volumes of image mount points no volume covers: those stay folders on 9p,
    as rkt has them (`POD/volumes/APP-POINT` on the host, a docker image's filled with
    what the image has there: stage1/volumes.py)."""
    from pyrkt.image import fsimage
    from pyrkt.stage1.plan import VolumeKind

    out: dict[str, Disk] = {}
    for app in plan.apps:
        for m in app.mounts:
            if m.kind is not VolumeKind.EMPTY or m.implicit or m.volume in out:
                continue
            st = os.lstat(m.source)  # made by stage0; not shared with a guest on disks
            base = fsimage.empty_image(cache, st.st_mode, st.st_uid, st.st_gid)
            layer = disks_dir(pod) / f"volume-{m.volume}.qcow2"
            new_layer(layer, base, cache)
            out[m.volume] = Disk(disk_id(first + len(out)), base, (layer,))
    return out


def recorded(pod: Path) -> dict[str, Disk]:
    """The disks a pod ran with (POD/kvm/disks.json), by app name; {} for a 9p pod."""
    try:
        data = json.loads((kvm_dir(pod) / RECORD).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise RktError(f"pod {pod.name}: unreadable {RECORD}: {e}") from e
    return {str(app): Disk(str(d["id"]), Path(d["base"]), (Path(d["layer"]),))
            for app, d in data.items()}


def attach_qmp(q: Qmp, disks: Sequence[Disk]) -> None:
    """Hot-plug disks into the running VM q talks to (after a template restore)."""
    from pyrkt.stage1.kvm.hypervisors.qemu import blockdev_nodes, disk_device

    for d in disks:
        for node in blockdev_nodes(d):
            q.execute("blockdev-add", node)
        q.execute("device_add", disk_device(d))
