"""prctl(2): no_new_privs, the capability bounding set, ambient caps, death signal,
child subreaper, keep-caps. Each wrapper raises OSError naming the operation."""

from __future__ import annotations

import ctypes

from pyrkt.linux.libc import check, libc

PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_SET_THP_DISABLE = 41
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4


def prctl(option: int, arg2: int = 0, arg3: int = 0, name: str = "prctl") -> int:
    ulong = ctypes.c_ulong
    ret: int = libc().prctl(ctypes.c_int(option), ulong(arg2), ulong(arg3), ulong(0), ulong(0))
    return check(ret, "prctl", name)


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1, name="PR_SET_NO_NEW_PRIVS")


def get_no_new_privs() -> bool:
    return prctl(PR_GET_NO_NEW_PRIVS, name="PR_GET_NO_NEW_PRIVS") == 1


def capbset_drop(cap: int) -> None:
    prctl(PR_CAPBSET_DROP, cap, name=f"PR_CAPBSET_DROP {cap}")


def capbset_read(cap: int) -> bool:
    return prctl(PR_CAPBSET_READ, cap, name=f"PR_CAPBSET_READ {cap}") == 1


def set_pdeathsig(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig, name="PR_SET_PDEATHSIG")


def set_child_subreaper() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 1, name="PR_SET_CHILD_SUBREAPER")


def set_thp_disable() -> None:
    """No transparent huge pages for this process and its children (kept across exec)."""
    prctl(PR_SET_THP_DISABLE, 1, name="PR_SET_THP_DISABLE")


def set_keepcaps(on: bool) -> None:
    prctl(PR_SET_KEEPCAPS, 1 if on else 0, name="PR_SET_KEEPCAPS")


def ambient_raise(cap: int) -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, name=f"PR_CAP_AMBIENT_RAISE {cap}")


def ambient_clear_all() -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, name="PR_CAP_AMBIENT_CLEAR_ALL")
