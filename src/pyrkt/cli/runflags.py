"""rkt's `run` / `prepare` command line: pod flags, then images each followed by its flags.

    rkt run [pod flags] IMAGE [app flags] [-- ARGS... ---] [IMAGE [app flags] ...]

Per-app flags apply to the image before them; one given before any image is an error
("--exec must follow an image"). `parse_run_args` returns the pod-level flags and the
list of apps; nothing here touches the disk except `--set-env-file`.
"""

from __future__ import annotations

import sys

from pyrkt.appc import pod as appc
from pyrkt.appc import validate as check
from pyrkt.cli.common import parse_bool
from pyrkt.errors import UsageError
from pyrkt.pod.runopts import EXTENSION_PREFIXES
from pyrkt.record import field, record
from pyrkt.stage0.prepare import AppSpec

POD_VALUE = {
    "--net", "--port", "--dns", "--dns-search", "--dns-opt", "--dns-domain", "--hosts-entry",
    "--hostname", "--uuid-file-save", "--set-env", "--set-env-file", "--volume",
    "--pod-manifest", "--pull-policy", "--stage1-url", "--stage1-path", "--stage1-name",
    "--stage1-hash", "--stage1-from-dir", "--annotation", "--label", "--user-annotation",
    "--user-label",
}  # fmt: skip
POD_BOOL = {"--interactive", "--inherit-env", "--no-overlay", "--no-store", "--store-only",
            "--mds-register", "--private-users", "--quiet"}  # fmt: skip
APP_VALUE = {
    "--exec", "--name", "--working-dir", "--user", "--group", "--supplementary-gids",
    "--environment", "--mount", "--memory", "--cpu", "--cpu-shares", "--caps-retain",
    "--caps-remove", "--seccomp", "--signature", "--stdin", "--stdout", "--stderr",
    "--oom-score-adj",
}  # fmt: skip
APP_BOOL = {"--readonly-rootfs"}
# rkt's deprecated spellings: accepted, with pflag's notice on stderr
DEPRECATED = {"--cap-retain": "--caps-retain", "--cap-remove": "--caps-remove"}



@record(frozen=False)
class RunArgs:
    """The parsed `rkt run`/`prepare` command line: pod flags and apps."""

    apps: list[AppSpec] = field(default_factory=list)
    values: dict[str, list[str]] = field(default_factory=dict)
    bools: dict[str, bool] = field(default_factory=dict)
    pod_mounts: list[tuple[str, str]] = field(default_factory=list)  # --mount before images
    help: bool = False

    def last(self, flag: str, default: str = "") -> str:
        v = self.values.get(flag)
        return v[-1] if v else default

    def all(self, flag: str) -> list[str]:
        return self.values.get(flag, [])

    def flag(self, flag: str) -> bool:
        return self.bools.get(flag, False)

    def extensions(self) -> tuple[tuple[str, str], ...]:
        return tuple(
            (k[2:], v[-1]) for k, v in self.values.items() if k.startswith(EXTENSION_PREFIXES)
        )


def split_kv(text: str, flag: str) -> tuple[str, str]:
    k, eq, v = text.partition("=")
    if not eq or not k:
        raise UsageError(f"invalid {flag} {text!r}: expected NAME=VALUE")
    return k, v


def parse_annotations(values: list[str], flag: str, *,
                      acid: bool = False) -> tuple[tuple[str, str], ...]:  # fmt: skip
    """NAME=VALUE flags (annotations, labels): AC identifiers as names when `acid`, at
    most check.MAX_KV_BYTES in all."""
    out = tuple(split_kv(x, flag) for x in values)
    if acid:
        for k, _ in out:
            check.ac_identifier(k, flag)
    check.kv_size(out, flag)
    return out


def env_kv(text: str, flag: str) -> tuple[str, str]:
    """NAME=VALUE of an environment flag: an appc variable name, no NUL."""
    k, v = split_kv(text, flag)
    check.env_name(k, flag)
    return k, check.no_nul(v, flag)


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _apply_app_flag(spec: dict[str, object], flag: str, value: str) -> None:
    if flag == "--readonly-rootfs":
        spec["readonly_rootfs"] = parse_bool(flag, value)
    elif flag == "--exec":
        spec["exec"] = check.exec_argv([value], flag)[0]
    elif flag == "--name":
        spec["name"] = check.ac_name(value, flag)
    elif flag == "--working-dir":
        spec["working_dir"] = check.abs_path(value, flag)
    elif flag == "--user":
        spec["user"] = value
    elif flag == "--group":
        spec["group"] = value
    elif flag == "--supplementary-gids":
        try:
            spec["supplementary_gids"] = tuple(int(x) for x in _csv(value))
        except ValueError:
            raise UsageError(f"invalid --supplementary-gids {value!r}") from None
    elif flag == "--environment":
        env = list(spec.get("environment", ()))  # type: ignore[call-overload]
        env.append(env_kv(value, flag))
        spec["environment"] = tuple(env)
    elif flag == "--mount":
        mounts = list(spec.get("mounts", ()))  # type: ignore[call-overload]
        mounts.append(parse_mount(value))
        spec["mounts"] = tuple(mounts)
    elif flag in ("--memory", "--cpu"):
        try:
            appc.parse_quantity(value, milli=flag == "--cpu")
        except appc.ManifestError:
            raise UsageError(f"invalid {flag} {value!r}") from None
        spec[flag[2:]] = value
    elif flag == "--cpu-shares":
        if not value.isdigit():
            raise UsageError(f"invalid --cpu-shares {value!r}")
        spec["cpu_shares"] = int(value)
    elif flag in ("--caps-retain", "--caps-remove"):
        spec[flag[2:].replace("-", "_")] = tuple(_csv(value))
        if spec.get("caps_retain") is not None and spec.get("caps_remove") is not None:
            raise UsageError("error: cannot use both --caps-retain and --caps-remove on the "
                             "same image")
    elif flag == "--signature":
        spec["signature"] = value
    elif flag == "--seccomp":
        spec["seccomp"] = parse_seccomp(value)
    elif flag == "--oom-score-adj":
        spec["oom_score_adj"] = parse_oom_score_adj(value)
    # --stdin, --stdout, --stderr: accepted, not enforced


def parse_mount(value: str) -> tuple[str, str]:
    """`volume=NAME,target=PATH`: (volume, target)."""
    opts = dict(split_kv(x, "--mount") for x in _csv(value))
    if set(opts) != {"volume", "target"}:
        raise UsageError(f"invalid --mount {value!r}", "expected volume=NAME,target=PATH")
    return (check.ac_name(opts["volume"], "--mount volume"),
            appc.mount_target(opts["target"], "--mount target"))  # fmt: skip


def parse_seccomp(value: str) -> appc.SeccompFilter:
    """`mode=remove|retain[,errno=ENAME],SYSCALL[,SYSCALL|@group...]`, checked against
    the syscall table (an unknown name is an error before any pod exists)."""
    usage = "expected mode=remove|retain[,errno=ENAME],SYSCALL[,SYSCALL...]"
    items = _csv(value)
    key, _, mode = items[0].partition("=") if items else ("", "", "")
    if key != "mode":
        raise UsageError(f"invalid --seccomp {value!r}: no mode", usage)
    try:
        seccomp_mode = appc.SeccompMode(mode)
    except ValueError:
        raise UsageError(f"invalid --seccomp mode {mode!r}", usage) from None
    items = items[1:]
    err = ""
    if items and items[0].startswith("errno="):
        err = items.pop(0).partition("=")[2]
    if not items:
        raise UsageError(f"invalid --seccomp {value!r}: no syscall", usage)
    misplaced = [x for x in items if "=" in x]
    if misplaced:
        raise UsageError(f"invalid --seccomp {value!r}: {misplaced[0]!r} out of place", usage)
    f = appc.SeccompFilter(seccomp_mode, tuple(items), err)
    from pyrkt.linux import seccomp

    try:
        seccomp.validate(f)
    except seccomp.SeccompError as e:
        raise UsageError(f"invalid --seccomp {value!r}: {e.message}", e.hint) from None
    return f


def parse_oom_score_adj(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = None
    if n is None or n not in appc.OOM_SCORE_ADJ_RANGE:
        raise UsageError(f"invalid --oom-score-adj {value!r}",
                         "expected an integer from -1000 to 1000")
    return n


def parse_run_args(argv: list[str]) -> RunArgs:
    out = RunArgs()
    cur: dict[str, object] | None = None
    specs: list[dict[str, object]] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok in ("-h", "--help"):
            out.help = True
            continue
        if tok == "--":
            if cur is None:
                raise UsageError("-- must follow an image")
            args: list[str] = []
            while i < len(argv) and argv[i] != "---":
                args.append(argv[i])
                i += 1
            i += 1  # skip ---
            cur["args"] = tuple(args)
            continue
        if not tok.startswith("-") or tok == "-":
            cur = {"image": tok}
            specs.append(cur)
            continue
        name, eq, val = tok.partition("=")
        if name.startswith("-") and not name.startswith("--"):
            name = "-" + name
        if name in DEPRECATED:
            print(f"Flag {name} has been deprecated, use {DEPRECATED[name]} instead",
                  file=sys.stderr)
            name = DEPRECATED[name]
        if name == "--mount" and cur is None:  # before any image: for every app
            if not eq:
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: {name}")
                val = argv[i]
                i += 1
            out.pod_mounts.append(parse_mount(val))
        elif name in APP_BOOL or name in APP_VALUE:
            if cur is None:
                raise UsageError(f"{name} must follow an image")
            if name in APP_VALUE and not eq:
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: {name}")
                val = argv[i]
                i += 1
            _apply_app_flag(cur, name, val if eq or name in APP_VALUE else "true")
        elif name in POD_BOOL and (eq or name not in POD_VALUE):
            out.bools[name] = parse_bool(name, val) if eq else True
        elif name in POD_VALUE or name.startswith(EXTENSION_PREFIXES):
            if not eq:
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: {name}")
                val = argv[i]
                i += 1
            out.values.setdefault(name, []).append(val)
        else:
            raise UsageError(f"unknown flag: {name}")
    out.apps = [AppSpec(**s) for s in specs]  # type: ignore[arg-type]
    return out


# ---- pod-level values ---------------------------------------------------------------


def parse_volume(text: str) -> appc.Volume:
    parts = _csv(text)
    if not parts:
        raise UsageError("empty --volume")
    name = ""
    opts: dict[str, str] = {}
    if "=" not in parts[0]:  # NAME,kind=...; also accepted: name=NAME,kind=...
        name, parts = parts[0], parts[1:]
    for p in parts:
        k, v = split_kv(p, "--volume")
        opts[k] = v
    name = check.ac_name(opts.pop("name", name), "--volume")
    kind = opts.pop("kind", "")
    if kind not in ("host", "empty"):
        raise UsageError(f"invalid --volume {text!r}", "kind must be host or empty")

    def b(key: str) -> bool | None:
        return parse_bool("--volume " + key, opts.pop(key)) if key in opts else None

    def n(key: str) -> int | None:
        if key not in opts:
            return None
        v = opts.pop(key)
        if not v.isdigit():
            raise UsageError(f"invalid --volume {key}={v!r}")
        return int(v)

    vol = appc.Volume(
        name=name,
        kind=kind,
        source=opts.pop("source", ""),
        read_only=b("readOnly"),
        recursive=b("recursive"),
        mode=opts.pop("mode", ""),
        uid=n("uid"),
        gid=n("gid"),
    )
    if opts:
        raise UsageError(f"invalid --volume {text!r}: unknown option {next(iter(opts))!r}")
    return appc.check_volume(vol, f"--volume {name} ")


def parse_port(text: str) -> appc.ExposedPort:
    """NAME:[HOSTIP:]HOSTPORT"""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[-1].isdigit() or not parts[0]:
        raise UsageError(f"invalid --port {text!r}", "expected NAME:[HOSTIP:]HOSTPORT")
    port = int(parts[-1])
    if not 0 < port < 65536:
        raise UsageError(f"invalid --port {text!r}: port out of range")
    name = check.ac_name(parts[0], "--port")
    return appc.ExposedPort(name, port, parts[1] if len(parts) == 3 else "")


def parse_env_list(values: list[str], flag: str) -> tuple[tuple[str, str], ...]:
    seen: dict[str, str] = {}
    for v in values:
        k, val = env_kv(v, flag)
        if k in seen:
            raise UsageError(f"environment variable {k!r} is set more than once with {flag}")
        seen[k] = val
    return tuple(seen.items())


def read_env_files(paths: list[str]) -> tuple[tuple[str, str], ...]:
    """rkt's env files: NAME=VALUE lines; empty lines and lines starting with `#` or
    `;` are skipped; a name set twice (in any of the files) is an error."""
    env: dict[str, str] = {}
    for p in paths:
        text = check.read_file(p, "--set-env-file").decode(errors="replace")
        for line in text.splitlines():
            if not line or line.startswith(("#", ";")):
                continue
            k, eq, v = line.partition("=")
            if not eq or not k:
                raise UsageError(
                    f'invalid argument "{p}" for "--set-env-file" flag: environment '
                    f'variable must be specified as name=value (file "{p}")')
            if k in env:
                raise UsageError(f'invalid argument "{p}" for "--set-env-file" flag: '
                                 f'environment variable "{k}" already set (file "{p}")')
            env[k] = check.no_nul(v, "--set-env-file")
            check.env_name(k, "--set-env-file")
    return tuple(env.items())


def parse_hosts_entries(values: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for v in values:
        if v == "host":
            out.append(("host", ""))
            continue
        ip, eq, name = v.partition("=")
        if not eq or not ip or not name:
            raise UsageError(f"invalid --hosts-entry {v!r}", "expected IP=HOSTNAME or host")
        out.append((ip, name))
    return tuple(out)


def split_list(values: list[str]) -> tuple[str, ...]:
    return tuple(x for v in values for x in _csv(v))
