"""Starting the hypervisor: in its jail (jail.py, rkt-jail.c) or, for lkvm and with
PYRKT_KVM_JAIL=off, as a plain child. `spawn` is the one way every VM of the kvm stage1
starts: a pod's, booted or restored from a template, and a template's (templates/,
which runs unconfined: only the stage1's own kernel and init run in it, before any pod
data exists, and it ends once saved).

Confined, the hypervisor is the first process of a new PID namespace, started with
`subprocess.Popen` (no `preexec_fn`: the fast spawn path), so its host pid is the one
Popen returns (POD/pid) and it stays the runner's child (then rkt-wait's). Its memory
cgroup is made here and removed once it exited (`remove_groups`), by whoever waits for
it: the runner in-process, rkt-wait (RKT_WAIT_RMDIR) or waiter.py; `rkt gc` removes
what a killed waiter left.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pyrkt import log
from pyrkt.errors import RktError
from pyrkt.linux import prctl
from pyrkt.record import record
from pyrkt.stage1 import contract
from pyrkt.stage1.kvm import assets, hypervisors
from pyrkt.stage1.kvm.vm import VmPlan

ENV_JAIL = "PYRKT_KVM_JAIL"


def jail_enabled(name: str) -> bool:
    """QEMU runs confined unless PYRKT_KVM_JAIL=off (to tell a confinement failure from
    another); lkvm, never run on these machines, is not confined."""
    return name == hypervisors.HypervisorName.QEMU and os.environ.get(ENV_JAIL) != "off"


def confine(pod: Path, uuid: str, vp: VmPlan, found: Path, argv: list[str],
            env: dict[str, str], fds: list[int], netns: Path | None, cache: Path
            ) -> tuple[list[str], list[Path]]:
    """The hypervisor's command line in its jail, its memory cgroup made, the seccomp
    program in an fd added to fds (env gets what the hypervisor needs); and the groups
    to remove after it. found: the hypervisor as found on the PATH (absolute)."""
    from pyrkt.linux.cgroup import Limits, PodCgroups
    from pyrkt.stage1.kvm import hvexec, jail

    # The hypervisor and the launcher from the stage1 image's own tree, never from the
    # pod's writable copy (the guest's share).
    s1 = contract.stage1_image_rootfs(pod)
    with contextlib.suppress(ValueError):  # a bundled QEMU found in the pod's copy
        found = s1 / found.relative_to(contract.stage1_rootfs(pod))
    exe = hvexec.for_path(found, argv[0], s1, cache)
    env.update(exe.env)
    cg = PodCgroups(uuid)
    groups = cg.leaf_and_pod_dirs(jail.CGROUP_LEAF)
    try:
        cg.create(jail.CGROUP_LEAF, Limits(memory=jail.memory_limit(vp)))
    except OSError as e:
        remove_groups(groups)
        raise RktError(f"cannot make the VM's memory cgroup: {e}") from e
    j = jail.for_pod(pod, vp, exe.files, netns, tuple(cg.join_files(jail.CGROUP_LEAF)))
    fd = os.memfd_create("rkt-jail-seccomp", os.MFD_CLOEXEC)
    fds.append(fd)
    os.write(fd, jail.setid_filter())
    os.lseek(fd, 0, os.SEEK_SET)
    launcher = assets.jail_path(s1)
    return jail.launcher_argv(launcher, j, [*exe.argv0, *argv[1:]], fd), groups


@record
class Confinement:
    """What confining a pod's hypervisor takes besides its plan."""

    pod: Path
    uuid: str
    exe: Path  # the hypervisor as found on the PATH, absolute
    cache: Path  # DIR/cache


def spawn(cwd: Path, vp: VmPlan, argv: list[str], *, confinement: Confinement | None = None,
          netns: Path | None = None, interactive: bool = False, pass_fds: Sequence[int] = (),
          pidfile: Path | None = None, output: Path | None = None,
          install_hint: str | None = None,
          die_with_us: bool = False) -> tuple[subprocess.Popen[bytes], list[Path]]:
    """Start a hypervisor; it and the cgroups to remove once it is gone (`remove_groups`).

    argv: the driver's for vp; confinement: in its jail (then in netns, if any, through
    the jail), else in netns by nsenter; interactive: it gets our stdin; output: its
    stdout and stderr go to this file (a template's QEMU), else to ours; pidfile: its pid,
    written at once (`rkt gc` kills what a killed `rkt run` left); die_with_us: it gets
    SIGKILL when this process dies (a template's QEMU, which no pod's gc would find; a
    confined one has it from its launcher). The command line is logged under --debug and
    kept in cwd/kvm/cmdline (cwd/cmdline without a kvm/)."""
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C"}
    fds = list(pass_fds)
    groups: list[Path] = []
    out = None
    try:
        if confinement is not None:
            c = confinement
            argv, groups = confine(c.pod, c.uuid, vp, c.exe, argv, env, fds, netns, c.cache)
        elif netns is not None:
            from pyrkt.net.netns import netns_exec_argv

            argv = [*netns_exec_argv(netns), *argv]
        log.debug("kvm: " + shlex.join(argv))
        where = cwd / "kvm" if (cwd / "kvm").is_dir() else cwd
        (where / "cmdline").write_text(shlex.join(argv) + "\n")
        _no_huge_pages()
        if output is not None:
            out = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        p = start(argv, cwd, env, interactive, fds, confinement is not None, out, die_with_us,
                  escape_key=vp.escape_key)
    except FileNotFoundError as e:
        remove_groups(groups)
        raise RktError(f"{argv[0]}: command not found", install_hint) from e
    except BaseException:
        remove_groups(groups)
        raise
    finally:
        for fd in fds[len(pass_fds):]:  # what confine added (the seccomp program)
            os.close(fd)
        if out is not None:
            os.close(out)
    if pidfile is not None:
        pidfile.write_text(f"{p.pid}\n")
    return p, groups


def start(argv: list[str], pod: Path, env: dict[str, str], interactive: bool,
          fds: list[int], jailed: bool, output: int | None = None,
          die_with_us: bool = False, *, escape_key: bool = False) -> subprocess.Popen[bytes]:
    """Start the hypervisor (jailed: as the init of a new PID namespace). Interactive or
    escape_key: it reads our stdin. But for an interactive pod (whose Ctrl-C is a byte
    for the guest) it runs in a session of its own: a Ctrl-C on our terminal is for
    `rkt run` (which stops the pod), not a signal that ends QEMU."""
    from pyrkt.linux import ns

    with ns.children_in_new_pid_namespace() if jailed else contextlib.nullcontext():
        return subprocess.Popen(
            argv,
            cwd=pod,
            env=env,
            stdin=None if interactive or escape_key else subprocess.DEVNULL,
            start_new_session=not interactive,
            stdout=output,
            stderr=output,
            pass_fds=fds,
            # preexec_fn costs the fast spawn path: only for a template's QEMU (once)
            preexec_fn=_die_with_parent if die_with_us else None,
        )


def _die_with_parent() -> None:
    prctl.set_pdeathsig(signal.SIGKILL)


def _no_huge_pages() -> None:
    """No transparent huge pages for the hypervisor (set on this process, QEMU inherits
    it; the runner becomes the waiter next, and a preexec_fn would cost the fast spawn
    path). QEMU asks for them on guest RAM and TCG's code cache (madvise), so
    every 2 MiB range the guest touches once would stay resident whole, and the
    balloon's free page reports (4 KiB granular on the host) could not give parts of
    one back."""
    with contextlib.suppress(OSError):
        prctl.set_thp_disable()


def remove_groups(groups: list[Path]) -> None:
    """Remove the hypervisor's cgroups once it is gone (leaf first; a busy one stays
    for `rkt gc`)."""
    for d in groups:
        with contextlib.suppress(OSError):
            d.rmdir()
