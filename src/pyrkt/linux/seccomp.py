"""A seccomp-bpf syscall filter: the default remove-set the container stage1 installs
in every app (unless `--insecure-options=seccomp`), built and loaded without libseccomp.

The filter denies, with EPERM, syscalls a containerized app has no business making
(module loading, kexec, reboot, mounts, namespaces, keyrings, ptrace, clock setting,
swap, ...: about rkt's and Docker's default blacklists). Native x86_64 only: any other
ABI (i386 `int 0x80`, x32) is denied with ENOSYS, so it cannot be used to get around the
list; on other host architectures no filter is built. `prctl(PR_SET_SECCOMP)` raises
OSError naming the operation.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

from pyrkt.linux.libc import check, libc

# x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl).
DEFAULT_REMOVE_SET_X86_64: dict[str, int] = {
    "ptrace": 101, "uselib": 134, "ustat": 136, "sysfs": 139, "vhangup": 153,
    "pivot_root": 155, "_sysctl": 156, "adjtimex": 159, "acct": 163, "settimeofday": 164,
    "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169,
    "iopl": 172, "ioperm": 173, "create_module": 174, "init_module": 175,
    "delete_module": 176, "get_kernel_syms": 177, "query_module": 178, "quotactl": 179,
    "nfsservctl": 180, "lookup_dcookie": 212, "clock_settime": 227, "kexec_load": 246,
    "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272,
    "perf_event_open": 298, "name_to_handle_at": 303, "open_by_handle_at": 304,
    "clock_adjtime": 305, "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311,
    "kcmp": 312, "finit_module": 313, "kexec_file_load": 320, "bpf": 321,
    "userfaultfd": 323, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
}  # fmt: skip

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
_OFF_NR, _OFF_ARCH = 0, 4  # offsets in struct seccomp_data

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def remove_set_program(nrs: list[int], arch: int = AUDIT_ARCH_X86_64,
                       err: int = errno.EPERM) -> bytes:
    """A BPF program (struct sock_filter[]) denying nrs with err, allowing the rest."""
    prog = [
        _ins(_LD_W_ABS, _OFF_ARCH),
        _ins(_JEQ_K, arch, jt=1),
        _ins(_RET_K, RET_ERRNO | errno.ENOSYS),  # another ABI
        _ins(_LD_W_ABS, _OFF_NR),
        _ins(_JGE_K, X32_SYSCALL_BIT, jf=1),
        _ins(_RET_K, RET_ERRNO | errno.ENOSYS),  # x32 syscalls
    ]
    for nr in sorted(set(nrs)):
        prog.append(_ins(_JEQ_K, nr, jf=1))
        prog.append(_ins(_RET_K, RET_ERRNO | err))
    prog.append(_ins(_RET_K, RET_ALLOW))
    return b"".join(prog)


def default_program() -> bytes | None:
    """The default filter for this machine; None where there is none (non-x86_64)."""
    if platform.machine() != "x86_64":
        return None
    return remove_set_program(list(DEFAULT_REMOVE_SET_X86_64.values()))


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load(program: bytes) -> None:
    """Install the filter on the calling thread (and what it execs). Needs no_new_privs
    or CAP_SYS_ADMIN."""
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    ulong = ctypes.c_ulong
    ret = libc().prctl(ctypes.c_int(PR_SET_SECCOMP), ulong(SECCOMP_MODE_FILTER),
                       ctypes.byref(fprog), ulong(0), ulong(0))
    check(ret, "prctl", "PR_SET_SECCOMP")
