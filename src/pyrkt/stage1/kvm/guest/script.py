"""The pod script: a busybox `sh` program the host writes for the guest init, and each
app's mount plan, which `rkt-exec` makes in the app's own mount namespace.

Every decision is made here, on the host, from the `PodPlan`; the guest only executes.
The init sources the script with /stage1 = the pod's stage1 rootfs (9p tag rkt.stage1),
/ctl = the pod's control folder (rkt.ctl),
$rkt_port_{out,err,agent} = the virtio-serial ports' devices and `rkt_agent` defined.
Each app is started by `rkt-exec --ns FILE --mounts PLAN`: a mount namespace whose root
is the app's rootfs (pivot_root), holding the mounts of its plan (`app_mounts`: /sys, a
minimal /dev, the pod's /etc files, /run, its volumes, /proc) and none of the init's (the
pod shares, the other apps' roots, the initramfs); `rkt enter` joins it (`--ns FILE`).
An app whose rootfs is a disk (rootfs=block) has it mounted at that same path by the pod
script first (`disk_lines`, found by serial number), so its namespace's root is the
disk's; an `empty` volume on a disk is mounted once at volume_mount_point and bound
from there into each app's namespace.
The host has made /stage1/rkt/status and, where it could, each app's /proc, /sys, /dev
mount points (APP_MOUNT_POINTS): under emulation each guest fork+exec costs tens of
milliseconds, each 9p round trip about one.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Mapping, Sequence

from pyrkt.record import record, replace
from pyrkt.stage1 import devices
from pyrkt.stage1.plan import AppPlan, MountPlan, PodPlan

GUEST_STAGE1 = "/stage1"
GUEST_CTL = "/ctl"
# Where each app's mount namespace is bound in the init's view (a folder of the
# initramfs, which no app sees), for `rkt enter`.
GUEST_NS_DIR = "/run/rkt"
CGROUP_ROOT = "/sys/fs/cgroup/rkt"
CPU_PERIOD_US = 100000
# Made by the host in each app's rootfs before the boot where it can (rkt-exec makes
# what is missing).
APP_MOUNT_POINTS = ("proc", "sys", "dev")

# Linux capability numbers (include/uapi/linux/capability.h).
_CAP_NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
    "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
    "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
CAPS: dict[str, int] = {name: i for i, name in enumerate(_CAP_NAMES)}


def q(s: str) -> str:
    return shlex.quote(s)


@record
class RunDir:
    """An app's /run folder (a plain folder in a writable rootfs), as the host found it.

    The guest mounts a tmpfs over it with the same mode and owner, holding a copy of its
    content when it has some (podman's tmpcopyup): QEMU 7.2's 9p server refuses to make a
    FIFO or a unix socket on a share (ENXIO, docs/kvm.md "FIFOs and unix sockets"), and
    /run is where daemons put theirs; on a Linux host /run is a tmpfs too."""

    mode: int
    uid: int
    gid: int
    empty: bool

    def options(self) -> str:
        return f"nosuid,nodev,mode={self.mode & 0o7777:04o},uid={self.uid},gid={self.gid}"


# A single-file volume is shared as a folder holding the file under this name.
FILE_SHARE_NAME = "file"


def volume_tag(index: int) -> str:
    return f"rkt.v{index}"


def guest_rootfs(app: AppPlan) -> str:
    return f"{GUEST_STAGE1}/opt/stage2/{app.name}/rootfs"


# Every capability (--insecure-options=capabilities): rkt-exec leaves the init's alone.
ALL_CAPS = tuple(f"CAP_{name}" for name in _CAP_NAMES)


def cap_arg(caps: Sequence[str]) -> str:
    """rkt-exec's CAPS argument: the numbers of the retained set, "-" for none (an
    empty set is no capability at all, as rkt), "all" for ALL_CAPS."""
    if set(caps) >= set(ALL_CAPS):
        return "all"
    nums = []
    for c in caps:
        key = c.upper().removeprefix("CAP_")
        if key in CAPS:
            nums.append(str(CAPS[key]))
    return ",".join(sorted(set(nums), key=int)) or "-"


def controllers(app: AppPlan) -> tuple[str, ...]:
    """The cgroup v2 controllers an app's limits need (none: the app gets no cgroup;
    creating and enabling them costs tenths of a second under emulation)."""
    out = []
    if app.memory_limit is not None:
        out.append("memory")
    if app.cpu_limit_milli is not None or app.cpu_shares is not None:
        out.append("cpu")
    return tuple(out)


def seccomp_file(app: AppPlan) -> str:
    """The guest path of the app's seccomp filter (written by the host, read by rkt-exec)."""
    return f"{GUEST_CTL}/seccomp/{app.name}"


def mounts_file(app: AppPlan) -> str:
    """The guest path of the app's mount plan (`app_mounts`, written by the host)."""
    return f"{GUEST_CTL}/mounts/{app.name}"


def ns_file(app: AppPlan) -> str:
    """Where the app's mount namespace is bound in the init's view."""
    return f"{GUEST_NS_DIR}/{app.name}"


def exec_line(app: AppPlan, argv: Sequence[str] | None = None, *,
              seccomp: bool = False, start: bool = False, keep_tty: bool = False,
              diagnose: bool = False) -> str:
    """`env -i ... rkt-exec ...` running argv (default: the app's) as the app would run,
    in the app's mount namespace: made from its mount plan (start: the app's own start),
    else joined (`rkt enter`); seccomp: rkt-exec loads the app's filter (seccomp_file)
    just before the exec; keep_tty: the app is on the pod's terminal and rkt-exec stays
    its session leader (its last output is not lost to the hangup when it exits:
    rkt-exec.c keep_tty); diagnose: an app's own start, which says as rkt why its program
    cannot be executed (rkt-exec.c diagnose)."""
    env = " ".join(q(f"{k}={v}") for k, v in app.env)
    if diagnose:
        env = f"RKT_DIAGNOSE=1 {env}"
    if keep_tty:
        env = f"RKT_TTY_KEEPER=1 {env}"
    if seccomp:
        env = f"{q('RKT_SECCOMP=' + seccomp_file(app))} {env}"
    if app.rlimits:  # rkt-exec sets them (and takes the variable out)
        limits = ",".join(f"{r.resource}:{r.soft}:{r.hard}" for r in app.rlimits)
        env = f"RKT_RLIMITS={limits} {env}"
    if app.umask is not None:
        env = f"RKT_UMASK={app.umask:04o} {env}"
    groups = ",".join(str(g) for g in app.supplementary_gids) or "-"
    cg = f"{CGROUP_ROOT}/{app.name}" if controllers(app) else "-"
    args = " ".join(q(a) for a in (argv if argv is not None else app.argv))
    ns = f"--ns {q(ns_file(app))}"
    if start:
        ns += f" --mounts {q(mounts_file(app))}"
    return (
        f"env -i {env} /bin/rkt-exec {ns} {q(guest_rootfs(app))} {q(app.working_dir or '/')} "
        f"{app.uid} {app.gid} {groups} {cap_arg(app.capabilities)} "
        f"{1 if app.no_new_privs else 0} {q(cg)} -- {args}"
    )


def _field(s: str) -> str:
    """A mount plan field: backslash, space, tab and newline as fstab's octal escapes."""
    for c in "\\ \t\n":
        s = s.replace(c, f"\\{ord(c):03o}")
    return s


def _mount(source: str, target: str, fstype: str, options: str) -> str:
    return f"mount {_field(source)} {_field(target)} {fstype} {options or '-'}"


def dev_steps(console: str | None = None) -> list[str]:
    """The app's minimal /dev (`stage1/devices.py`, what the container flavor gives) as
    mount plan steps; console: the guest's device (the app's terminal) bound as
    /dev/console and under its own name (which `tty` shows, as before).

    The guest kernel has no devices cgroup, so /dev is a `nodev` tmpfs and each device
    is a bind of the init's node (devtmpfs): a node an app makes with rkt's CAP_MKNOD
    (on /dev, or on its rootfs: the disks are `nodev` too) does not open, so it cannot
    reach the other apps' disks or the pod's virtio-serial ports."""
    out = [_mount("tmpfs", "/dev", "tmpfs",
                  f"nosuid,nodev,strictatime,{devices.DEV_DATA},mkdir")]
    out += [_mount(f"/dev/{n}", f"/dev/{n}", "none", "bind,mkfile")
            for n, _, _ in devices.DEVICES]
    out += [f"symlink /dev/{n} {_field(t)}" for n, t in devices.LINKS]
    out += [
        "mkdir /dev/pts 0755",
        _mount("devpts", "/dev/pts", "devpts", f"nosuid,noexec,{devices.PTS_DATA}"),
        "mkdir /dev/shm 1777",
        _mount("shm", "/dev/shm", "tmpfs", f"nosuid,nodev,noexec,{devices.SHM_DATA}"),
        # optional: the tailored guest kernel has no POSIX message queues
        _mount("mqueue", "/dev/mqueue", "mqueue", "nosuid,nodev,noexec,mkdir,optional"),
    ]
    if console:
        out.append(_mount(console, "/dev/console", "none", "bind,mkfile"))
        out.append(_mount(console, console, "none", "bind,mkfile"))
    return out


def app_mounts(
    app: AppPlan, tags: Mapping[MountPlan, str], etc_files: Sequence[str] = (),
    run_dir: RunDir | None = None, console: str | None = None, *,
    protect_paths: bool = True, single_files: Collection[MountPlan] = (),
) -> str:
    """The app's mount plan (`rkt-exec --mounts`; the host writes it to mounts_file):
    its /sys (read-only; its own cgroup at /sys/fs/cgroup when it has limits;
    protect_paths: /sys/firmware inaccessible, as rkt: an empty read-only tmpfs of mode
    0), a minimal /dev (console: the guest's device for /dev/console), the pod's /etc
    files (etc_files: names under /ctl/etc, bound where the app has an /etc), the tmpfs
    over its /run (run_dir), its volumes (tags: their 9p tags; single_files: those whose
    source is a file, which their share holds as FILE_SHARE_NAME), its /proc, and a
    read-only root (`--readonly-rootfs`). Targets are resolved inside the app's root,
    bind sources in the init's view. /proc comes last but the remount: while rkt-exec,
    with every capability, follows the image's symlinks to the targets, there is no
    /proc/PID/root in the app's root to lead it out."""
    lines = [
        f"# app {app.name}: made by rkt-exec in the app's mount namespace",
        _mount("sysfs", "/sys", "sysfs", "ro,nosuid,nodev,noexec,mkdir"),
    ]
    if protect_paths:
        lines.append(_mount("tmpfs", "/sys/firmware", "tmpfs",
                            "ro,nosuid,nodev,noexec,mode=000"))
    if controllers(app):  # its own cgroup (the init's view), read-only, as rkt's apps see it
        lines.append(_mount(f"{CGROUP_ROOT}/{app.name}", "/sys/fs/cgroup", "none",
                            "bind,ro,nosuid,nodev,noexec"))
    lines += dev_steps(console)
    for name in etc_files:
        lines.append(_mount(f"{GUEST_CTL}/etc/{name}", f"/etc/{name}", "none", "bind,mkfile"))
    if run_dir is not None:
        # An empty /run gets a plain tmpfs; one with content gets a copy of it (copyup).
        copy = "" if run_dir.empty else ",copyup"
        lines.append(_mount("tmpfs", "/run", "tmpfs", run_dir.options() + copy))
    for m in app.mounts:
        if m not in tags:  # on a disk: mounted by the pod script (disk_lines), bound
            ro = ",ro" if m.read_only else ""
            lines.append(_mount(volume_mount_point(m.volume), m.target, "none",
                                f"bind{ro},mkdir"))
            continue
        # A writable volume gets cache=mmap: a writable MAP_SHARED mmap (databases, apt's
        # cache) fails on 9p without it; reads and writes still go to the host (rkt #1917).
        ro = ",ro" if m.read_only else ""
        cache = "" if m.read_only else ",cache=mmap"
        where = f"file={FILE_SHARE_NAME}" if m in single_files else "mkdir"
        opts = f"trans=virtio,version=9p2000.L{cache},access=any{ro},{where}"
        lines.append(_mount(tags[m], m.target, "9p", opts))
    lines.append(_mount("proc", "/proc", "proc", "nosuid,nodev,noexec,mkdir"))
    if app.readonly_rootfs:
        lines.append(_mount("-", "/", "none", "remount,bind,ro"))
    return "\n".join(lines) + "\n"


def _cgroup_lines(app: AppPlan) -> list[str]:
    cg = q(f"{CGROUP_ROOT}/{app.name}")
    lines: list[str] = []  # the folder (if any) is made with the app's mount points
    if app.memory_limit is not None:
        lines.append(f"echo {app.memory_limit} > {cg}/memory.max")
    if app.cpu_limit_milli is not None:
        quota = max(1000, app.cpu_limit_milli * CPU_PERIOD_US // 1000)
        lines.append(f"echo {quota} {CPU_PERIOD_US} > {cg}/cpu.max")
    if app.cpu_shares is not None:
        weight = max(1, min(10000, 1 + ((app.cpu_shares - 2) * 9999) // 262142))
        lines.append(f"echo {weight} > {cg}/cpu.weight")
    return lines


def mount_tags(plan: PodPlan, on_disks: Collection[str] = ()) -> dict[tuple[str, MountPlan], str]:
    """One 9p tag per app and mount (by plan order), but for the volumes on disks
    (on_disks: their names): a 9p device mounts once at a time in the guest, and each app
    mounts its own in its own namespace (two apps with the same volume at the same place
    would get EBUSY from one tag)."""
    tags: dict[tuple[str, MountPlan], str] = {}
    for app in plan.apps:
        for m in app.mounts:
            if m.volume not in on_disks:
                tags.setdefault((app.name, m), volume_tag(len(tags)))
    return tags


def app_tags(tags: Mapping[tuple[str, MountPlan], str], app: AppPlan) -> dict[MountPlan, str]:
    """The app's own mounts' tags (mount_tags), for app_mounts."""
    return {m: t for (name, m), t in tags.items() if name == app.name}


def pid_file(app: AppPlan) -> str:
    """Where the app's watcher writes the app's pid (an app name has no dot: no clash
    with the namespace files beside it)."""
    return f"{GUEST_NS_DIR}/{app.name}.pid"


def status_file(app: AppPlan) -> str:
    return f"{GUEST_STAGE1}/rkt/status/{app.name}"


# Functions of the pod script. The apps' pids come from the pid files their watchers
# write (rkt_track: an app, or a pre-start handler, while it runs; emptied after, so
# that no pid reused later is killed); rkt_stop_apps (a failing app, the agent's stop)
# marks the pod as going down first, so that an app whose watcher starts it meanwhile
# stops too (its watcher checks the mark after writing the pid file: one of the two
# sees the other).
LIFECYCLE_FUNCTIONS = f"""\
rkt_app_pids() {{
	rkt_pids=
	for rkt_f in {GUEST_NS_DIR}/*.pid; do
		[ -r "$rkt_f" ] && read -r rkt_p <"$rkt_f" && rkt_pids="$rkt_pids $rkt_p"
	done
}}
rkt_stop_apps() {{
	: >{GUEST_NS_DIR}/down
	rkt_app_pids
	kill -"${{1:-TERM}}" $rkt_pids 2>/dev/null
	(sleep "${{rkt_stop_grace:-10}}"; rkt_app_pids; kill -KILL $rkt_pids 2>/dev/null) &
}}
rkt_track() {{
	echo "$2" >"$1"
	[ -e {GUEST_NS_DIR}/down ] && kill -TERM "$2"
	wait "$2"
	rkt_rc=$?
	: >"$1"
}}
rkt_failed() {{
	[ -n "$rkt_down" ] && return
	rkt_down=1
	rkt_stop_apps
}}
rkt_wait_watcher() {{
	while :; do
		wait "$1"
		rkt_rc=$?
		[ "$rkt_rc" -gt 128 ] && kill -0 "$1" 2>/dev/null || break
	done
	[ "$rkt_rc" = 0 ] || [ -e "$2" ] || echo "$rkt_rc" >"$2"
}}
"""


def _app_io(plan: PodPlan) -> str:
    """The redirections of an app (and its handlers): the pod's terminal or its ports."""
    if plan.interactive:
        return "</dev/ttyS1 >/dev/ttyS1 2>&1"
    return "</dev/null >&4 2>&5 4>&- 5>&-"


def watcher_lines(plan: PodPlan, app: AppPlan, seccomp: bool) -> list[str]:
    """The app's watcher, a subshell of the init (rkt's app unit): its pre-start
    handlers as root, one after the other (the first one makes the app's namespace; a
    failing one is the app's exit code, and the app does not run), the app (each pid in
    pid_file while it runs: rkt_track), its exit code in its status file, rkt_failed in the init
    (SIGUSR1) when that is not 0 (rkt's OnFailure=halt: the pod stops), then its
    post-stop handlers as root (also after a failed start, as systemd's ExecStopPost)."""
    io = _app_io(plan)
    st = q(status_file(app))
    pids = q(pid_file(app))
    root = replace(app, uid=0, gid=0, supplementary_gids=())
    out = ["(", "rkt_rc=0"]
    if app.oom_score_adj is not None:  # the watcher's, inherited by the app
        out.append(f"echo {app.oom_score_adj} > /proc/self/oom_score_adj")
    for i, argv in enumerate(app.pre_start):  # each only while all before succeeded
        line = exec_line(root, argv, seccomp=seccomp, start=i == 0)
        out.append(f'{"" if i == 0 else "[ $rkt_rc != 0 ] || "}'
                   f'{{ {line} {io} & rkt_track {pids} $!; }}')
    line = exec_line(app, seccomp=seccomp, start=not app.pre_start,
                     keep_tty=plan.interactive, diagnose=True)
    if plan.interactive:
        line = f"setsid -c {line}"
    out += [
        f'{"[ $rkt_rc != 0 ] || " if app.pre_start else ""}'
        f'{{ {line} {io} & rkt_track {pids} $!; }}',
        f"echo $rkt_rc > {st}",
        "[ $rkt_rc = 0 ] || kill -USR1 $$",
    ]
    out += [f"{exec_line(root, argv, seccomp=seccomp)} {io}" for argv in app.post_stop]
    out += ["exit 0", ") &"]
    return [x for x in out if x]


# How long the guest waits for its disks (a hot-plugged one appears after the restore).
DISK_WAIT_STEPS = 1200
DISK_WAIT_STEP_S = "0.05"
# Where rkt-exec --go mounts a restored pod's disks (GUEST_DISKS/SERIAL), and its
# FIFO; how long the pod script waits for its word (it waits up to a minute per disk).
GUEST_DISKS = "/run/rkt-disks"
GUEST_DISKS_READY = f"{GUEST_DISKS}/ready"
DISK_WAIT_RESTORED_S = 300


GUEST_VOLUMES = "/run/rkt-volumes"
# What the pod script says when the pod cannot start (a disk missing), before it powers
# the VM off: the host reports it (finish.py) instead of a clean end without exit codes.
GUEST_FAILED = f"{GUEST_CTL}/failed"


def fail(message: str) -> str:
    """Say why the pod cannot start, in the console log and to the host, and halt."""
    return f"{{ rkt_say {q(message)}; echo {q(message)} > {GUEST_FAILED}; rkt_halt; }}"


def volume_mount_point(volume: str) -> str:
    """Where an `empty` volume on a disk is mounted in the init's view (apps bind it)."""
    return f"{GUEST_VOLUMES}/{volume}"


# The read-ahead of the apps' rootfs disks (KiB; the kernel's default is 128): an
# executable's page faults read this much around them, so that starting a busybox app
# reads its disk in 13 requests instead of 27-32 (each one a round trip through QEMU,
# milliseconds under emulation). Volumes' disks keep the default (random access).
ROOTFS_READ_AHEAD_KB = 2048


@record
class DiskTarget:
    """Where the guest mounts one of the pod's disks."""

    serial: str  # the disk's serial number (vm.Disk.id)
    target: str  # the guest path: an app's rootfs, or a volume's mount point
    what: str  # for messages: "app NAME" / "volume NAME"
    read_ahead_kb: int  # 0: the kernel's default


def disk_targets(plan: PodPlan, disks: Mapping[str, str],
                 volume_disks: Mapping[str, str] | None = None) -> list[DiskTarget]:
    """Each app's disk (disks: app name -> the disk's serial number) at the app's rootfs
    path, read ahead ROOTFS_READ_AHEAD_KB; each volume's disk (volume_disks: volume name
    -> serial number) at volume_mount_point."""
    out = [DiskTarget(disks[a.name], guest_rootfs(a), f"app {a.name}", ROOTFS_READ_AHEAD_KB)
           for a in plan.apps if a.name in disks]
    return out + [DiskTarget(sn, volume_mount_point(v), f"volume {v}", 0)
                  for v, sn in (volume_disks or {}).items()]


def disk_lines(targets: Sequence[DiskTarget]) -> list[str]:
    """Mount each of the pod's disks at its target (disk_targets); without them the pod
    cannot run.

    In a pod restored from a VM template, rkt-exec --go did it (in the background while
    the init mounted its shares, then moved into place) and says how that went on the
    FIFO GUEST_DISKS/ready (its being there tells the two cases apart: the same script
    runs after a boot when a restore failed): the script waits for that line. After a
    boot it finds each disk by its serial number in /sys/block/vd*/serial (builtins only;
    each read asks the device: the scan stops once all are found), waiting for disks
    still appearing, mounts it and sets its read-ahead (read_ahead_lines)."""
    if not targets:
        return []
    missing = fail("the pod's disks did not appear")
    said = "".join(f"\t{q(f'mount {t.serial}')}|{q(f'move {t.serial}')}) "
                   f"{fail(f'cannot mount the disk of {t.what}')} ;;\n" for t in targets)
    out = [
        f"if [ -p {GUEST_DISKS_READY} ]; then",
        f"exec 8<>{GUEST_DISKS_READY}",
        f"read -t {DISK_WAIT_RESTORED_S} -r rkt_res <&8",
        "exec 8<&-",
        "case $rkt_res in\n\tok) ;;\n" + said + f"\t*) {missing} ;;\nesac",
        "else",
    ]
    volumes = [q(t.target) for t in targets if not t.read_ahead_kb]
    if volumes:
        out.append("mkdir -p " + " ".join(volumes))
    cases = "".join(f"\t{q(t.serial)}) rkt_disk_{i}=/dev/${{b##*/}} ;;\n"
                    for i, t in enumerate(targets))
    have = " && ".join(f'[ -n "$rkt_disk_{i}" ]' for i in range(len(targets)))
    out += [
        "rkt_n=0",
        "while :; do",
        "for b in /sys/block/vd*; do",
        # no newline at the end of a serial: `read` sets s and returns 1
        '[ -r "$b/serial" ] || continue; s=; read -r s <"$b/serial"',
        "case $s in\n" + cases + "esac",
        f"{have} && break",
        "done",
        f"{have} && break",
        f"rkt_n=$((rkt_n + 1)); [ $rkt_n -lt {DISK_WAIT_STEPS} ] || {missing}",
        f"sleep {DISK_WAIT_STEP_S}",
        "done",
    ]
    for i, t in enumerate(targets):
        out.append(f'mount -t ext4 -o noatime,nodev "$rkt_disk_{i}" {q(t.target)} || '
                   + fail(f"cannot mount the disk of {t.what}"))
    return [*out, *read_ahead_lines(targets), "fi"]


def read_ahead_lines(targets: Sequence[DiskTarget]) -> list[str]:
    """After a boot, raise the read-ahead of the disks that want it (the apps' rootfs)
    once disk_lines mounted them, before any app starts: each found by its mount point in
    the init's mountinfo (builtins only, and no device asked: a read of a disk's serial
    number is a request to it), its queue by its device number."""
    cases = "".join(f"\t{q(t.target)}) echo {t.read_ahead_kb} "
                    f'>"/sys/dev/block/$rkt_mm/queue/read_ahead_kb" ;;\n'
                    for t in targets if t.read_ahead_kb)
    if not cases:
        return []
    return [
        "while read -r _ _ rkt_mm _ rkt_mp _; do",
        "case $rkt_mp in\n" + cases + "esac",
        "done </proc/self/mountinfo",
    ]


# The guest kernel's fs.nr_open: no open-files limit can be above it.
GUEST_NR_OPEN = 1 << 20


def nofile_lines(nofile: tuple[int, int] | None) -> list[str]:
    """Set the init's open-files limits (soft, hard), inherited by every app and `enter`
    (the guest kernel's default, 1024/4096, is below what apps such as redis raise to)."""
    if nofile is None:
        return []
    soft, hard = (GUEST_NR_OPEN if n < 0 or n > GUEST_NR_OPEN else n for n in nofile)
    return [f"ulimit -H -n {hard}", f"ulimit -S -n {min(soft, hard)}"]


def pod_script(
    plan: PodPlan, *, net_script: str = "", stop_grace_s: int = 10,
    seccomp_apps: Sequence[str] = (),
    disks: Sequence[DiskTarget] = (),
    nofile: tuple[int, int] | None = None,
) -> str:
    """The script for plan; net_script: sh that configures the guest NICs (from NET);
    seccomp_apps: apps whose seccomp filter the host wrote (seccomp_file); disks: where
    each of the pod's disks goes (disk_targets, disk_lines); nofile: the (soft, hard)
    open-files limits the apps get,
    as `rkt run`'s own (what a container app inherits). Each app's mount plan
    (app_mounts) is the host's to write, at mounts_file."""
    out = [
        f"# pod {plan.uuid}: written by pyrkt's kvm stage1 on the host",
        f"echo {q(plan.hostname)} > /proc/sys/kernel/hostname",
        net_script,  # the init brought the loopback interface up
        f"rkt_stop_grace={stop_grace_s}",
        LIFECYCLE_FUNCTIONS,
        "trap rkt_failed USR1",
        *nofile_lines(nofile),
    ]
    needed = sorted({c for app in plan.apps for c in controllers(app)})
    if needed:
        enable = q(" ".join(f"+{c}" for c in needed))
        out += [
            "mount -t cgroup2 cgroup2 /sys/fs/cgroup",
            f"echo {enable} > /sys/fs/cgroup/cgroup.subtree_control",
            f"mkdir -p {CGROUP_ROOT}",
            f"echo {enable} > {CGROUP_ROOT}/cgroup.subtree_control",
        ]
    out += disk_lines(disks)
    if not plan.interactive:
        # A virtio port opens once: the init holds it and every app inherits it.
        out.append('exec 4>"$rkt_port_out" 5>"$rkt_port_err"')
    for i, app in enumerate(plan.apps):
        out.append(f"# app {app.name}")
        # The app's namespace file, empty until its rkt-exec binds the namespace onto it
        # (a redirection: no fork); `rkt enter` waits while it is empty.
        out.append(f": > {q(ns_file(app))}")
        if controllers(app):
            out.append(f"mkdir -p {q(f'{CGROUP_ROOT}/{app.name}')}")
        out += _cgroup_lines(app)
        out += watcher_lines(plan, app, app.name in seccomp_apps)
        out.append(f"rkt_w_{i}=$!")
    out += [
        "rkt_agent &",
        "rkt_agent_pid=$!",
        f": > {GUEST_CTL}/started",
    ]
    for i, app in enumerate(plan.apps):
        out.append(f"rkt_wait_watcher $rkt_w_{i} {q(status_file(app))}")
    # The init ends the VM with its halter (init.sh: rkt_halt), which syncs first: the
    # disks' writes reach QEMU without a `sync` (a fork+exec).
    out += ["kill $rkt_agent_pid 2>/dev/null", ""]
    return "\n".join(out)
