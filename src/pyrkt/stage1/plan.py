"""What a stage1 executes, computed once on the host from the pod manifest.

Both the container flavor (in Python) and the KVM flavor (a busybox `sh` script written
for the guest init) execute the same `PodPlan`: every decision (env precedence, user and
group resolution inside the image, mount targets resolved inside the rootfs, limits,
capabilities) is made here, so the guest needs no Python and no decisions.
"""

from __future__ import annotations

import enum
from pathlib import Path

from pyrkt.appc.pod import SeccompFilter
from pyrkt.record import field, record


class VolumeKind(enum.StrEnum):
    HOST = "host"
    EMPTY = "empty"


@record
class MountPlan:
    """One volume mounted into one app."""

    volume: str  # volume name
    kind: VolumeKind
    source: Path  # host path (kind=host) or the pod's folder for an empty volume
    target: str  # absolute path inside the app's rootfs, symlinks and `..` resolved
    read_only: bool = False
    recursive: bool = True
    # rkt's implicit volume for an image mount point no volume covers (`<app>-<point>`,
    # made when the pod starts); `seed`: a docker image's, filled from the image there
    implicit: bool = False
    seed: bool = False


@record
class Rlimit:
    """One resource limit for an app (setrlimit(2); the OCI runtime's process.rlimits)."""

    resource: int  # RLIMIT_* number
    soft: int
    hard: int


@record
class AppPlan:
    """One app as the stage1 runs it."""

    name: str
    rootfs: Path  # host path of the app's rootfs (inside the pod folder)
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    uid: int = 0
    gid: int = 0
    supplementary_gids: tuple[int, ...] = ()
    working_dir: str = "/"
    capabilities: tuple[str, ...] = ()  # retained set, "CAP_..." names
    memory_limit: int | None = None  # bytes
    cpu_limit_milli: int | None = None  # millicores
    cpu_shares: int | None = None
    readonly_rootfs: bool = False
    no_new_privs: bool = True
    mounts: tuple[MountPlan, ...] = ()
    seccomp: SeccompFilter | None = None  # the app's own filter; None: the default one
    oom_score_adj: int | None = None
    rlimits: tuple[Rlimit, ...] = ()  # set before the app runs (kvm: rkt-exec)
    umask: int | None = None
    # the image's event handlers: run as root in the app's rootfs, with its environment,
    # before it starts (a failing one fails the app) and after it exited
    pre_start: tuple[tuple[str, ...], ...] = ()
    post_stop: tuple[tuple[str, ...], ...] = ()


@record
class PortPlan:
    """--port=NAME:[HOSTIP:]HOSTPORT resolved against the apps' image ports."""

    name: str
    protocol: str  # "tcp" | "udp"
    pod_port: int
    host_port: int
    host_ip: str = ""  # "" = all addresses


@record
class DnsPlan:
    """--dns / --dns-search / --dns-opt / --dns-domain / --hosts-entry as given.

    servers == ("host",) copies the host's resolv.conf; ("none",) writes none; ()
    means "whatever the network (CNI) returned, else the image's own file".
    hosts_entries == (("host", ""),) copies the host's /etc/hosts.
    """

    servers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    domain: str = ""
    hosts_entries: tuple[tuple[str, str], ...] = ()  # (ip, name)


@record
class PodPlan:
    """A pod as the stage1 runs it."""

    uuid: str
    hostname: str
    apps: tuple[AppPlan, ...]
    interactive: bool = False
    net: str = "default"  # the --net value: "default", "none", "host", "a,b:ARGS", ...
    ports: tuple[PortPlan, ...] = ()
    dns: DnsPlan = field(default_factory=DnsPlan)
    annotations: dict[str, str] = field(default_factory=dict)
