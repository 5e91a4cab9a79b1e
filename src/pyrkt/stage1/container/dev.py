"""A minimal /dev for an app (`stage1/devices.py`): tmpfs with null, zero, full, random,
urandom, tty, a private devpts with /dev/ptmx, /dev/shm, the pod's /dev/mqueue,
/dev/console when the pod is interactive."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pyrkt.linux.mount import MS, bind, mount
from pyrkt.stage1.devices import DEV_DATA, DEVICES, LINKS, PTS_DATA, SHM_DATA


def populate(dev: Path, *, console_tty: str | None = None) -> None:
    """Mount and fill dev (the app's /dev, an existing directory)."""
    d = str(dev)
    mount("tmpfs", d, "tmpfs", MS.NOSUID | MS.STRICTATIME, DEV_DATA)
    old = os.umask(0)
    try:
        for name, major, minor in DEVICES:
            os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        for name, target in LINKS:
            os.symlink(target, dev / name)
        (dev / "pts").mkdir(0o755)
        mount("devpts", d + "/pts", "devpts", MS.NOSUID | MS.NOEXEC, PTS_DATA)
        (dev / "shm").mkdir(0o1777)
        mount("shm", d + "/shm", "tmpfs", MS.NOSUID | MS.NODEV | MS.NOEXEC, SHM_DATA)
        (dev / "mqueue").mkdir(0o755)
        mount("mqueue", d + "/mqueue", "mqueue", MS.NOSUID | MS.NODEV | MS.NOEXEC)
        if console_tty:
            (dev / "console").touch(0o600)
            bind(console_tty, d + "/console", recursive=False)
    finally:
        os.umask(old)
