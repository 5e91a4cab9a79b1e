"""seccomp-bpf syscall filters, built and loaded without libseccomp.

Two kinds of filter reach an app of the container stage1:

- the default one, installed unless `--insecure-options=seccomp`: a remove-set that
  denies, with EPERM, syscalls a containerized app has no business making (module
  loading, kexec, reboot, mounts, namespaces, keyrings, ptrace, clock setting, swap,
  ...: about rkt's and Docker's default blacklists);
- an app's own, from its `os/linux/seccomp-{retain,remove}-set` isolator (an image's, or
  `--seccomp mode=...` on the command line): `filter_program(SeccompFilter)`.

Sets name syscalls (x86_64 names, `pyrkt.linux.syscalls_x86_64`) and rkt's groups:
`@rkt/default-blacklist`, `@rkt/default-whitelist`, `@docker/default-blacklist`,
`@docker/default-whitelist`, and appc's `@appc.io/all` and `@appc.io/empty`, each alone
(a retain-set of all: no filter; the three other combinations: the default filter, as
in rkt). A filtered call fails with the isolator's errno, or kills the process with
SIGSYS when it names none (as rkt did).
A retain-set always lets through what it takes to exec the app and to exit.

A third kind, for the kvm flavor's hypervisor: `mode_bits_program` refuses the calls
whose mode argument has given bits (setuid/setgid, see stage1/kvm/jail.py).

Native x86_64 only: any other ABI (i386 `int 0x80`, x32) is denied with ENOSYS, so it
cannot be used to get around the list; on other host architectures there is no default
filter and an app's own is an error. Unknown names raise `SeccompError`;
`prctl(PR_SET_SECCOMP)` failing raises OSError naming the operation.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Iterable

from pyrkt.appc.pod import SeccompFilter, SeccompMode
from pyrkt.errors import RktError
from pyrkt.linux.libc import check, libc
from pyrkt.linux.syscalls_x86_64 import SYSCALLS_X86_64


class SeccompError(RktError):
    """A seccomp set or errno that cannot be turned into a filter."""


_DEFAULT_REMOVE_NAMES = (
    "ptrace", "uselib", "ustat", "sysfs", "vhangup", "pivot_root", "_sysctl", "adjtimex",
    "acct", "settimeofday", "mount", "umount2", "swapon", "swapoff", "reboot", "iopl",
    "ioperm", "create_module", "init_module", "delete_module", "get_kernel_syms",
    "query_module", "quotactl", "nfsservctl", "lookup_dcookie", "clock_settime",
    "kexec_load", "add_key", "request_key", "keyctl", "unshare", "perf_event_open",
    "name_to_handle_at", "open_by_handle_at", "clock_adjtime", "setns", "process_vm_readv",
    "process_vm_writev", "kcmp", "finit_module", "kexec_file_load", "bpf", "userfaultfd",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
)  # fmt: skip
DEFAULT_REMOVE_SET_X86_64: dict[str, int] = {n: SYSCALLS_X86_64[n] for n in _DEFAULT_REMOVE_NAMES}

# Docker's default profile as rkt mirrored it (rkt's stage1/init/common); names of other
# architectures (chown32, ...) are in the lists and simply absent on x86_64.
DOCKER_DEFAULT_BLACKLIST = (
    "acct", "add_key", "adjtimex", "bpf", "clock_adjtime", "clock_settime",
    "create_module", "delete_module", "finit_module", "get_kernel_syms", "get_mempolicy",
    "init_module", "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl",
    "lookup_dcookie", "mbind", "mount", "move_pages", "name_to_handle_at", "nfsservctl",
    "open_by_handle_at", "perf_event_open", "pivot_root", "process_vm_readv",
    "process_vm_writev", "ptrace", "query_module", "quotactl", "reboot", "request_key",
    "set_mempolicy", "setns", "settimeofday", "stime", "swapon", "swapoff", "sysfs",
    "_sysctl", "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86",
    "vm86old",
)  # fmt: skip
DOCKER_DEFAULT_WHITELIST = (
    "accept", "accept4", "access", "alarm", "bind", "brk", "capget", "capset", "chdir",
    "chmod", "chown", "chown32", "clock_getres", "clock_gettime", "clock_nanosleep",
    "close", "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
    "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_wait",
    "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group",
    "faccessat", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir",
    "fchmod", "fchmodat", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64",
    "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr",
    "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "futex", "futimesat", "getcpu", "getcwd", "getdents", "getdents64",
    "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
    "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid",
    "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32",
    "getrlimit", "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt",
    "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel",
    "ioctl", "io_destroy", "io_getevents", "ioprio_get", "ioprio_set", "io_setup",
    "io_submit", "ipc", "kill", "lchown", "lchown32", "lgetxattr", "link", "linkat",
    "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr",
    "lstat", "lstat64", "madvise", "memfd_create", "mincore", "mkdir", "mkdirat", "mknod",
    "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr",
    "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink", "mremap",
    "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
    "nanosleep", "newfstatat", "_newselect", "open", "openat", "pause", "personality",
    "pipe", "pipe2", "poll", "ppoll", "prctl", "pread64", "preadv", "prlimit64", "pselect6",
    "pwrite64", "pwritev", "read", "readahead", "readlink", "readlinkat", "readv", "recv",
    "recvfrom", "recvmmsg", "recvmsg", "remap_file_pages", "removexattr", "rename",
    "renameat", "renameat2", "restart_syscall", "rmdir", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_get_priority_max", "sched_get_priority_min",
    "sched_getscheduler", "sched_rr_get_interval", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl",
    "semget", "semop", "semtimedop", "send", "sendfile", "sendfile64", "sendmmsg",
    "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid",
    "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority",
    "setregid", "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32",
    "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid", "setsockopt",
    "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr", "shmat",
    "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4",
    "sigreturn", "socket", "socketcall", "socketpair", "splice", "stat", "stat64",
    "statfs", "statfs64", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs",
    "sysinfo", "syslog", "tee", "tgkill", "time", "timer_create", "timer_delete",
    "timerfd_create", "timerfd_gettime", "timerfd_settime", "timer_getoverrun",
    "timer_gettime", "timer_settime", "times", "tkill", "truncate", "truncate64",
    "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat", "utimes",
    "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write", "writev", "arch_prctl",
    "modify_ldt", "chroot", "clone",
)  # fmt: skip
# rkt's own whitelist was Docker's; today's libc also calls the successors of calls in
# it (statx for stat, clone3 for clone, ...), so pyrkt's @rkt/default-whitelist adds them.
_NEWER_EQUIVALENTS = (
    "statx", "clone3", "rseq", "faccessat2", "close_range", "openat2", "preadv2",
    "pwritev2", "epoll_pwait2", "pidfd_open", "pidfd_send_signal", "membarrier",
    "futex_waitv", "set_mempolicy_home_node",
)  # fmt: skip
GROUPS: dict[str, tuple[str, ...]] = {
    "@docker/default-blacklist": DOCKER_DEFAULT_BLACKLIST,
    "@docker/default-whitelist": DOCKER_DEFAULT_WHITELIST,
    "@rkt/default-blacklist": DOCKER_DEFAULT_BLACKLIST,
    "@rkt/default-whitelist": DOCKER_DEFAULT_WHITELIST + _NEWER_EQUIVALENTS,
}
APPC_ALL, APPC_EMPTY = "@appc.io/all", "@appc.io/empty"
# What a retain-set always allows: exec'ing the app (the filter is loaded just before
# execve) and exiting or returning from a signal handler.
RETAIN_ALWAYS = ("execve", "execveat", "exit", "exit_group", "rt_sigreturn")

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
RET_KILL_PROCESS = 0x80000000
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
_OFF_NR, _OFF_ARCH, _OFF_ARGS = 0, 4, 16  # offsets in struct seccomp_data
BPF_MAXINSNS = 4096

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _prologue(arch: int) -> list[bytes]:
    """Load arch and nr; other ABIs and x32 syscalls get ENOSYS (they would number
    their calls differently)."""
    return [
        _ins(_LD_W_ABS, _OFF_ARCH),
        _ins(_JEQ_K, arch, jt=1),
        _ins(_RET_K, RET_ERRNO | errno.ENOSYS),  # another ABI
        _ins(_LD_W_ABS, _OFF_NR),
        _ins(_JGE_K, X32_SYSCALL_BIT, jf=1),
        _ins(_RET_K, RET_ERRNO | errno.ENOSYS),  # x32 syscalls
    ]


def _finish(prog: list[bytes]) -> bytes:
    if len(prog) > BPF_MAXINSNS:
        raise SeccompError(f"seccomp filter too long ({len(prog)} instructions)")
    return b"".join(prog)


def _program(nrs: Iterable[int], on_match: int, otherwise: int,
             arch: int = AUDIT_ARCH_X86_64) -> bytes:
    """The prologue, then each nr in turn -> on_match; else otherwise. One (test,
    return) pair per syscall: no jump offset ever exceeds 1."""
    prog = _prologue(arch)
    for nr in sorted(set(nrs)):
        prog.append(_ins(_JEQ_K, nr, jf=1))
        prog.append(_ins(_RET_K, on_match))
    prog.append(_ins(_RET_K, otherwise))
    return _finish(prog)


def mode_bits_program(mode_arg: dict[int, int], bits: int, err: int,
                      deny: Iterable[int] = (), deny_err: int = errno.ENOSYS,
                      arch: int = AUDIT_ARCH_X86_64) -> bytes:
    """A BPF program that refuses (errno err) each syscall of `mode_arg` (nr -> index of
    its mode argument) whose mode has any of `bits`, refuses every syscall of `deny`
    (deny_err), and allows the rest.

    The mode's low 32 bits are tested (BPF_JSET); they hold every mode bit."""
    prog = _prologue(arch)
    for nr, index in sorted(mode_arg.items()):
        prog += [
            _ins(_JEQ_K, nr, jf=4),  # another call: skip to the next test
            _ins(_LD_W_ABS, _OFF_ARGS + 8 * index),  # little-endian: the low word first
            _ins(_JSET_K, bits, jf=1),
            _ins(_RET_K, RET_ERRNO | err),
            _ins(_RET_K, RET_ALLOW),
        ]
    for nr in sorted(set(deny)):
        prog += [_ins(_JEQ_K, nr, jf=1), _ins(_RET_K, RET_ERRNO | deny_err)]
    prog.append(_ins(_RET_K, RET_ALLOW))
    return _finish(prog)


def remove_set_program(nrs: list[int], arch: int = AUDIT_ARCH_X86_64,
                       err: int = errno.EPERM) -> bytes:
    """A BPF program (struct sock_filter[]) denying nrs with err, allowing the rest."""
    return _program(nrs, RET_ERRNO | err, RET_ALLOW, arch)


def default_program() -> bytes | None:
    """The default filter for this machine; None where there is none (non-x86_64)."""
    if os.uname().machine != "x86_64":
        return None
    return remove_set_program(list(DEFAULT_REMOVE_SET_X86_64.values()))


def errno_value(name: str) -> int:
    """'EPERM' -> 1; anything that is not an errno name raises SeccompError."""
    value = getattr(errno, name, None) if name.startswith("E") and name.isupper() else None
    if not isinstance(value, int):
        raise SeccompError(f"unknown errno {name!r} in seccomp filter",
                           "use a name from errno(3), e.g. EPERM or ENOSYS")
    return value


def syscall_numbers(items: Iterable[str]) -> set[int]:
    """x86_64 numbers of syscall names and groups; an unknown name or group raises."""
    out: set[int] = set()
    for item in items:
        if item.startswith("@"):
            if item in (APPC_ALL, APPC_EMPTY):
                raise SeccompError(f"{item} cannot be combined with other seccomp entries")
            group = GROUPS.get(item)
            if group is None:
                raise SeccompError(f"unknown seccomp group {item!r}",
                                   "known: " + ", ".join([*GROUPS, APPC_ALL, APPC_EMPTY]))
            out.update(SYSCALLS_X86_64[n] for n in group if n in SYSCALLS_X86_64)
        elif item in SYSCALLS_X86_64:
            out.add(SYSCALLS_X86_64[item])
        else:
            raise SeccompError(f"unknown syscall {item!r} in seccomp filter",
                               "names are the x86_64 syscall names, e.g. mkdir or umount2")
    return out


def validate(f: SeccompFilter) -> None:
    """Raise SeccompError where f names an unknown syscall, group or errno."""
    if f.errno:
        errno_value(f.errno)
    if set(f.set) & {APPC_ALL, APPC_EMPTY}:
        if len(f.set) > 1:
            raise SeccompError(f"{APPC_ALL} and {APPC_EMPTY} must be alone in a seccomp set")
        return
    syscall_numbers(f.set)


def filter_program(f: SeccompFilter) -> bytes | None:
    """The BPF program for an app's seccomp isolator; None: no filter at all (a
    retain-set of @appc.io/all). A set of only @appc.io/empty (or a remove-set of only
    @appc.io/all) is the default filter, as in rkt."""
    validate(f)
    if os.uname().machine != "x86_64":
        raise SeccompError(f"seccomp filters are supported on x86_64 only, not on "
                           f"{os.uname().machine}")
    action = RET_ERRNO | errno_value(f.errno) if f.errno else RET_KILL_PROCESS
    if f.set == (APPC_ALL,) and f.mode is SeccompMode.RETAIN:
        return None
    if f.set in ((APPC_ALL,), (APPC_EMPTY,)):  # as rkt: the other three mean the default
        return default_program()
    if f.mode is SeccompMode.RETAIN:
        allowed = syscall_numbers(f.set) | {SYSCALLS_X86_64[n] for n in RETAIN_ALWAYS}
        return _program(allowed, RET_ALLOW, action)
    return _program(syscall_numbers(f.set), action, RET_ALLOW)


def load_late(program: bytes) -> None:
    """Install an app's own filter just before its exec, after privileges were dropped:
    without CAP_SYS_ADMIN the kernel wants no_new_privs first (as rkt set it for
    unprivileged apps)."""
    try:
        load(program)
    except PermissionError:
        from pyrkt.linux import prctl

        prctl.set_no_new_privs()
        load(program)


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
