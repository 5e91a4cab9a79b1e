"""The minimal /dev every app gets, in both flavors: a tmpfs with these character
devices and links, a private devpts (/dev/ptmx its ptmx), /dev/shm, /dev/mqueue where
the kernel has POSIX message queues, /dev/console when the pod is interactive.

The container flavor makes it with syscalls (`container/dev.py`); the kvm flavor writes
it into each app's mount plan, which `rkt-exec` makes in the guest (`kvm/guest/script.py`).
"""

from __future__ import annotations

# (name, major, minor), mode 0666
DEVICES: tuple[tuple[str, int, int], ...] = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
# (name, target)
LINKS: tuple[tuple[str, str], ...] = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
)
# mount data of the /dev tmpfs, its devpts and its /dev/shm
DEV_DATA = "mode=755,size=65536k"
PTS_DATA = "newinstance,ptmxmode=0666,mode=620"
SHM_DATA = "mode=1777,size=65536k"
