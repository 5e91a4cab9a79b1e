"""A one-file app image for VM pod tests: busybox sh that prints APP_OUT, exits APP_EXIT."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

APP_EXIT = 3
APP_OUT = "hello-from-the-vm"


def app_aci(work: Path) -> Path:
    root = work / "app"
    (root / "rootfs/bin").mkdir(parents=True)
    shutil.copy2("/usr/bin/busybox", root / "rootfs/bin/busybox")
    (root / "rootfs/bin/sh").symlink_to("busybox")
    manifest = {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/vmtest",
        "labels": [{"name": "version", "value": "1"}, {"name": "os", "value": "linux"},
                   {"name": "arch", "value": "amd64"}],
        "app": {"exec": ["/bin/sh", "-c", f"echo {APP_OUT}; exit {APP_EXIT}"],
                "user": "0", "group": "0"},
    }  # fmt: skip
    (root / "manifest").write_text(json.dumps(manifest))
    aci = work / "vmtest.aci"
    with tarfile.open(aci, "w") as tar:
        tar.add(root / "manifest", arcname="manifest")
        tar.add(root / "rootfs", arcname="rootfs")
    return aci
