"""Capabilities: names, capget(2)/capset(2) for the effective, permitted and inheritable
sets, and applying a retained set (bounding set, ambient set) before exec.

Each wrapper raises OSError naming the syscall.
"""

from __future__ import annotations

import ctypes

from pyrkt.linux import prctl
from pyrkt.linux.libc import check, libc
from pyrkt.record import record

CAP_NAMES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def cap_number(name: str) -> int:
    """'CAP_NET_ADMIN' (or 'net_admin') -> 12; ValueError for an unknown name."""
    n = name.strip().upper()
    if not n.startswith("CAP_"):
        n = "CAP_" + n
    try:
        return CAP_NAMES.index(n)
    except ValueError:
        raise ValueError(f"unknown capability {name!r}") from None


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAP_NAMES) - 1


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


@record
class CapSets:
    """Bit masks (bit n = capability n)."""

    effective: int
    permitted: int
    inheritable: int


def capget(pid: int = 0) -> CapSets:
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_Data * 2)()
    check(libc().capget(ctypes.byref(hdr), data), "capget", str(pid))
    return CapSets(
        data[0].effective | (data[1].effective << 32),
        data[0].permitted | (data[1].permitted << 32),
        data[0].inheritable | (data[1].inheritable << 32),
    )


def capset(sets: CapSets) -> None:
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (sets.effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (sets.permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (sets.inheritable >> shift) & 0xFFFFFFFF
    check(libc().capset(ctypes.byref(hdr), data), "capset")


def mask_of(names: tuple[str, ...] | list[str]) -> int:
    mask = 0
    for n in names:
        mask |= 1 << cap_number(n)
    return mask


def drop_bounding(keep_mask: int) -> None:
    """Drop every capability not in keep_mask from the bounding set."""
    for cap in range(last_cap() + 1):
        if not keep_mask & (1 << cap):
            prctl.capbset_drop(cap)


def apply_retained(keep_mask: int, *, ambient: bool) -> None:
    """Set effective = permitted = inheritable = keep_mask (masked by what exists);
    with ambient, also raise them in the ambient set so they survive exec as non-root."""
    full = (1 << (last_cap() + 1)) - 1
    keep = keep_mask & full
    capset(CapSets(keep, keep, keep))
    if ambient:
        for cap in range(last_cap() + 1):
            if keep & (1 << cap):
                prctl.ambient_raise(cap)
