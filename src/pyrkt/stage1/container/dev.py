"""A minimal /dev for an app: tmpfs with null, zero, full, random, urandom, tty, a
private devpts with /dev/ptmx, /dev/shm, the pod's /dev/mqueue, /dev/console when the
pod is interactive."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pyrkt.linux.mount import MS, bind, mount

DEVICES: tuple[tuple[str, int, int], ...] = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
LINKS: tuple[tuple[str, str], ...] = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
)


def populate(dev: Path, *, console_tty: str | None = None) -> None:
    """Mount and fill dev (the app's /dev, an existing directory)."""
    d = str(dev)
    mount("tmpfs", d, "tmpfs", MS.NOSUID | MS.STRICTATIME, "mode=755,size=65536k")
    old = os.umask(0)
    try:
        for name, major, minor in DEVICES:
            os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        for name, target in LINKS:
            os.symlink(target, dev / name)
        (dev / "pts").mkdir(0o755)
        mount("devpts", d + "/pts", "devpts", MS.NOSUID | MS.NOEXEC,
              "newinstance,ptmxmode=0666,mode=620")
        (dev / "shm").mkdir(0o1777)
        mount("shm", d + "/shm", "tmpfs", MS.NOSUID | MS.NODEV | MS.NOEXEC,
              "mode=1777,size=65536k")
        (dev / "mqueue").mkdir(0o755)
        mount("mqueue", d + "/mqueue", "mqueue", MS.NOSUID | MS.NODEV | MS.NOEXEC)
        if console_tty:
            (dev / "console").touch(0o600)
            bind(console_tty, d + "/console", recursive=False)
    finally:
        os.umask(old)
