"""Pod folder -> PodPlan: every decision a stage1 needs, made once, on the host.

`build_plan(pod_dir)` reads the pod manifest (`POD/pod`, where stage0 has already merged
the image's app with the per-app flags and the environment flags), the run options
(`POD/run-options.json`) and each app's rootfs (`/etc/passwd`, `/etc/group`, symlinks of
mount targets), and returns a `PodPlan`. It needs no root and changes nothing on disk.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
from pathlib import Path, PurePosixPath

from pyrkt.appc import pod as appc
from pyrkt.errors import RktError, go_quote
from pyrkt.pod import runopts
from pyrkt.stage1 import contract
from pyrkt.stage1.plan import AppPlan, DnsPlan, MountPlan, PodPlan, PortPlan, VolumeKind

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# rkt's default capability set for apps (stage1 common: DefaultCaps).
DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETFCAP",
    "CAP_SYS_CHROOT",
)

MAX_SYMLINKS = 255


class PlanError(RktError):
    """The pod cannot be planned (unknown user, bad mount, unknown port...)."""


def empty_volume_dir(pod_dir: Path, volume: str) -> Path:
    """Where an `empty` volume lives: stage0 creates it at prepare time."""
    return pod_dir / "volumes" / volume


def check_host_source(vol: appc.Volume, *, for_vm: bool = False) -> Path:
    """A host volume's source, refused when missing, reached through a symbolic link,
    or (for_vm: the kvm flavor, which shares folders and regular files with the VM)
    neither a folder nor a regular file.

    rkt resolved links in the source (`filepath.EvalSymlinks`) and mounted their target;
    pyrkt refuses them, since a link can be planted by whoever writes its folder (a pod
    sharing it, for one) to put the host's `/` or `/etc` in the next pod. The user gives
    the real path.
    """
    where = f"volume {vol.name!r}: source {vol.source}"
    try:
        st = os.stat(vol.source)
        real = os.path.realpath(vol.source, strict=True)
    except OSError as e:
        raise PlanError(f"{where}: {e.strerror}") from None
    given = os.path.normpath(vol.source)
    if given.startswith("//"):  # POSIX keeps a leading "//"; it means "/" on Linux
        given = "/" + given.lstrip("/")
    if real != given:
        raise PlanError(f"{where} goes through a symbolic link (to {real})",
                        "give the real path: links in volume sources are not followed")
    if for_vm and not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise PlanError(f"{where} is neither a folder nor a regular file",
                        "the kvm flavor shares folders and files with the VM, not devices")
    return Path(real)


def normalize_cap(name: str) -> str:
    n = name.strip().upper()
    return n if n.startswith("CAP_") else f"CAP_{n}"


# ---- paths inside a rootfs ----------------------------------------------------------


def resolve_in_rootfs(rootfs: Path, path: str) -> str:
    """`path` as seen inside `rootfs`, symlinks and `..` resolved, never escaping it.

    Returns an absolute path relative to the rootfs (e.g. "/var/lib/data"). Missing
    components are kept as they are (they will be created).
    """
    todo = [c for c in PurePosixPath("/", path).parts[1:]]
    todo.reverse()
    done: list[str] = []
    links = 0
    while todo:
        comp = todo.pop()
        if comp in ("", "."):
            continue
        if comp == "..":
            if done:
                done.pop()
            continue
        host = rootfs.joinpath(*done, comp)
        try:
            st = os.lstat(host)
        except (FileNotFoundError, NotADirectoryError):
            done.append(comp)
            continue
        if not stat.S_ISLNK(st.st_mode):
            done.append(comp)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise PlanError(f"too many levels of symbolic links resolving {path!r}")
        target = os.readlink(host)
        if target.startswith("/"):
            done = []
        parts = [c for c in target.split("/") if c]
        todo.extend(reversed(parts))
    return "/" + "/".join(done)


# The image's /etc/passwd and /etc/group are read whole: at most this much.
DB_MAX_BYTES = 16 << 20


def _read_db(rootfs: Path, rel: str) -> list[list[str]]:
    """The lines of the image's rel (its symlinks resolved inside the rootfs), read
    through `beneath`: the image is hostile (a FIFO, a device, a huge file, a link
    out of the rootfs are refused)."""
    from pyrkt.linux import beneath

    inside = resolve_in_rootfs(rootfs, rel).lstrip("/")
    try:
        text = beneath.read_file(rootfs, inside, DB_MAX_BYTES).decode(errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        raise PlanError(f"cannot read the image's {rel}: {e.strerror or e}") from e
    return [ln.split(":") for ln in text.splitlines() if ln and not ln.startswith("#")]


def resolve_user(rootfs: Path, user: str, app: str) -> tuple[int, int | None]:
    """uid (and the user's primary gid, if known) for an appc user string."""
    if user.isdigit():
        uid = int(user)
        for f in _read_db(rootfs, "/etc/passwd"):
            if len(f) > 3 and f[2] == user and f[3].isdigit():
                return uid, int(f[3])
        return uid, None
    if user.startswith("/"):
        try:
            st = os.stat(rootfs / resolve_in_rootfs(rootfs, user).lstrip("/"))
        except OSError as e:
            raise PlanError(f"app {app!r}: cannot stat {user} for its user: {e.strerror}") from e
        return st.st_uid, None
    for f in _read_db(rootfs, "/etc/passwd"):
        if len(f) > 3 and f[0] == user and f[2].isdigit():
            return int(f[2]), int(f[3]) if f[3].isdigit() else None
    raise PlanError(f"app {app!r}: user {user!r} not found in the image's /etc/passwd")


def resolve_group(rootfs: Path, group: str, app: str) -> int:
    if group.isdigit():
        return int(group)
    if group.startswith("/"):
        try:
            st = os.stat(rootfs / resolve_in_rootfs(rootfs, group).lstrip("/"))
        except OSError as e:
            raise PlanError(f"app {app!r}: cannot stat {group} for its group: {e.strerror}") from e
        return st.st_gid
    for f in _read_db(rootfs, "/etc/group"):
        if len(f) > 2 and f[0] == group and f[2].isdigit():
            return int(f[2])
    raise PlanError(f"app {app!r}: group {group!r} not found in the image's /etc/group")


# ---- the plan -----------------------------------------------------------------------


def _image_app(pod_dir: Path, name: str) -> appc.App:
    """The app section of the image manifest that stage0 left next to the rootfs."""
    path = contract.app_dir(pod_dir, name) / "manifest"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PlanError(f"app {name!r}: no app in the pod manifest and no image manifest") from e
    if not isinstance(data, dict) or not isinstance(data.get("app"), dict):
        raise PlanError(f"app {name!r}: the image has no app section; use --exec")
    return appc.parse_app(data["app"], "app")


def find_bin(rootfs: Path, app: appc.App, name: str) -> str:
    """The program an app executes, as a path in its rootfs (rkt's FindBinPath): an
    absolute path as it is; a bare name looked up in the app's PATH (relative entries
    from the working directory; without a PATH, the working directory, /bin, /usr/bin),
    symbolic links followed inside the rootfs, the first executable file."""
    bin_ = app.exec[0]
    workdir = app.working_directory or "/"
    if bin_.startswith("/"):
        return bin_
    if "/" in bin_:
        return posixpath.join(workdir, bin_)
    env = {kv.name: kv.value for kv in app.environment}
    path = env.get("PATH")
    dirs = path.split(":") if path is not None else [workdir, "/bin", "/usr/bin"]
    for d in dirs:
        candidate = posixpath.normpath(posixpath.join(workdir, d, bin_))
        real = rootfs / resolve_in_rootfs(rootfs, candidate).lstrip("/")
        try:
            st = os.stat(real)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return candidate
    raise PlanError(f"app {name!r}: unable to find {go_quote(bin_)} in "
                    f"{go_quote(path if path is not None else ':'.join(dirs))}")


def _env(app: appc.App, name: str) -> tuple[tuple[str, str], ...]:
    env: dict[str, str] = {}
    for kv in app.environment:
        env[kv.name] = kv.value
    env.setdefault("PATH", DEFAULT_PATH)
    env["AC_APP_NAME"] = name
    return tuple(env.items())


def _caps(app: appc.App) -> tuple[str, ...]:
    retain = app.isolator(appc.ISO_CAPS_RETAIN)
    remove = app.isolator(appc.ISO_CAPS_REMOVE)
    if isinstance(retain, dict):
        return tuple(dict.fromkeys(normalize_cap(c) for c in retain.get("set", [])))
    caps = list(DEFAULT_CAPS)
    if isinstance(remove, dict):
        gone = {normalize_cap(c) for c in remove.get("set", [])}
        caps = [c for c in caps if c not in gone]
    return tuple(caps)


def _limit(app: appc.App, name: str, *, milli: bool) -> int | None:
    v = app.isolator(name)
    if isinstance(v, dict) and v.get("limit") not in (None, ""):
        return appc.parse_quantity(str(v["limit"]), milli=milli)
    return None


def _mounts(
    pod_dir: Path, ra: appc.RuntimeApp, app: appc.App, rootfs: Path, pm: appc.PodManifest,
    docker: bool = False,
) -> tuple[MountPlan, ...]:
    """rkt's GenerateMounts: the runtime app's mounts (a target may also name one of the
    image's mount points), then each image mount point no mount covers, from the pod
    volume of its name or, without one, an implicit empty volume of its own
    (`<app>-<point>`; a docker image's is filled from the image). A volume's readOnly,
    when set, wins over the mount point's."""
    volumes = {v.name: v for v in pm.volumes}
    mp_by_name = {m.name: m for m in app.mount_points}
    out: list[MountPlan] = []
    covered: set[str] = set()
    for m in ra.mounts:
        mp = mp_by_name.get(m.path)  # appc: a mount may name a mount point instead
        target = mp.path if mp is not None else m.path
        covered.add(posixpath.normpath(posixpath.join("/", target)))
        vol = volumes.get(m.volume)
        if vol is None:
            raise PlanError(f"app {ra.name!r}: no volume named {m.volume!r} for {target}")
        by_volume = mp_by_name.get(m.volume)
        out.append(_mount(pod_dir, vol, rootfs, target, by_volume.read_only if by_volume
                          else False))  # fmt: skip
    for mp in app.mount_points:
        if posixpath.normpath(posixpath.join("/", mp.path)) in covered:
            continue
        vol = volumes.get(mp.name)
        if vol is not None:
            out.append(_mount(pod_dir, vol, rootfs, mp.path, mp.read_only))
            continue
        name = f"{ra.name}-{mp.name}"
        out.append(MountPlan(volume=name, kind=VolumeKind.EMPTY,
                             source=empty_volume_dir(pod_dir, name),
                             target=resolve_in_rootfs(rootfs, mp.path),
                             read_only=mp.read_only, implicit=True, seed=docker))
    return tuple(out)


def _mount(pod_dir: Path, vol: appc.Volume, rootfs: Path, target: str,
           point_ro: bool) -> MountPlan:  # fmt: skip
    kind = VolumeKind(vol.kind)
    source = check_host_source(vol) if kind is VolumeKind.HOST else \
        empty_volume_dir(pod_dir, vol.name)
    return MountPlan(
        volume=vol.name,
        kind=kind,
        source=source,
        target=resolve_in_rootfs(rootfs, target),
        read_only=point_ro if vol.read_only is None else vol.read_only,
        recursive=True if vol.recursive is None else vol.recursive,
    )


DOCKER_REPOSITORY = "appc.io/docker/repository"  # the annotation of a converted image


def converted_from_docker(pod_dir: Path, name: str) -> bool:
    """Whether the app's image came from docker (rkt's ConvertedFromDocker)."""
    try:
        data = json.loads((contract.app_dir(pod_dir, name) / "manifest").read_text())
    except (OSError, ValueError):
        return False
    anns = data.get("annotations") if isinstance(data, dict) else None
    return any(isinstance(a, dict) and a.get("name") == DOCKER_REPOSITORY
               for a in anns or [])  # fmt: skip


def _app_plan(pod_dir: Path, ra: appc.RuntimeApp, pm: appc.PodManifest) -> AppPlan:
    app = ra.app if ra.app is not None else _image_app(pod_dir, ra.name)
    if not app.exec:
        raise PlanError(f"app {ra.name!r} has nothing to execute", "use --exec")
    rootfs = contract.app_rootfs(pod_dir, ra.name)
    uid, user_gid = resolve_user(rootfs, app.user or "0", ra.name)
    gid = resolve_group(rootfs, app.group, ra.name) if app.group else (user_gid or 0)
    nnp = app.isolator(appc.ISO_NO_NEW_PRIVS)
    shares = app.isolator(appc.ISO_CPU_SHARES)
    return AppPlan(
        name=ra.name,
        rootfs=rootfs,
        argv=(find_bin(rootfs, app, ra.name), *app.exec[1:]),
        env=_env(app, ra.name),
        uid=uid,
        gid=gid,
        supplementary_gids=app.supplementary_gids,
        working_dir=app.working_directory or "/",
        capabilities=_caps(app),
        memory_limit=_limit(app, appc.ISO_MEMORY, milli=False),
        cpu_limit_milli=_limit(app, appc.ISO_CPU, milli=True),
        cpu_shares=int(shares) if isinstance(shares, int | str) and str(shares).isdigit() else None,
        readonly_rootfs=ra.read_only_rootfs,
        no_new_privs=nnp is True,
        mounts=_mounts(pod_dir, ra, app, rootfs, pm, converted_from_docker(pod_dir, ra.name)),
        seccomp=appc.seccomp_filter(app, f"app {ra.name!r}"),
        oom_score_adj=appc.oom_score_adj(app, f"app {ra.name!r}"),
        pre_start=_handlers(app, "pre-start", ra.name),
        post_stop=_handlers(app, "post-stop", ra.name),
    )


EVENTS = ("pre-start", "post-stop")


def _handlers(app: appc.App, event: str, name: str) -> tuple[tuple[str, ...], ...]:
    """The exec of each of the app's `event` handlers (rkt: ExecStartPre/ExecStopPost)."""
    out = []
    for h in app.event_handlers:
        h_name = h.get("name") if isinstance(h, dict) else None
        if h_name not in EVENTS:
            raise PlanError(f"app {name!r}: unrecognized eventHandler: {h_name}")
        if h_name == event:
            from pyrkt.appc import validate

            argv = h.get("exec")
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise PlanError(f"app {name!r}: eventHandler {event}: exec must be a list of "
                                "strings")  # fmt: skip
            out.append(validate.exec_argv(argv, f"app {name!r}: eventHandler {event}"))
    return tuple(out)


def _ports(pm: appc.PodManifest, apps: dict[str, appc.App]) -> tuple[PortPlan, ...]:
    known: dict[str, appc.Port] = {}
    for app in apps.values():
        for p in app.ports:
            known.setdefault(p.name, p)
    out = []
    for ep in pm.ports:
        port = known.get(ep.name)
        if port is None:
            raise PlanError(
                f"port name {ep.name!r} is not defined by any app",
                "known: " + (", ".join(sorted(known)) or "none"),
            )
        out.append(PortPlan(ep.name, port.protocol, port.port, ep.host_port, ep.host_ip))
    return tuple(out)


def load_manifest(pod_dir: Path) -> appc.PodManifest:
    try:
        text = contract.pod_manifest(pod_dir).read_bytes()
    except OSError as e:
        raise PlanError(f"cannot read the pod manifest: {e.strerror}") from e
    return appc.load_pod_manifest(text)


def build_plan(pod_dir: Path) -> PodPlan:
    pod_dir = Path(pod_dir)
    pm = load_manifest(pod_dir)
    ro = runopts.read(pod_dir)
    uuid = pod_dir.name
    apps = tuple(_app_plan(pod_dir, ra, pm) for ra in pm.apps)
    app_defs = {
        ra.name: ra.app if ra.app is not None else _image_app(pod_dir, ra.name) for ra in pm.apps
    }
    return PodPlan(
        uuid=uuid,
        hostname=ro.hostname or f"rkt-{uuid}",
        apps=apps,
        interactive=ro.interactive,
        net=ro.net,
        ports=_ports(pm, app_defs),
        dns=DnsPlan(
            servers=ro.dns,
            search=ro.dns_search,
            options=ro.dns_opt,
            domain=ro.dns_domain,
            hosts_entries=ro.hosts_entries,
        ),
        annotations={kv.name: kv.value for kv in pm.annotations},
    )
