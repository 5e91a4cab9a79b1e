"""Pod verbs: run-prepared, list, status, stop, rm, gc, cat-manifest, enter, export."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

from pyrkt.cli import podfmt
from pyrkt.cli.common import parse_bool
from pyrkt.errors import (
    Ambiguous,
    NotFound,
    PermissionRequired,
    RktError,
    UsageError,
    go_quote,
)
from pyrkt.options import GlobalOptions
from pyrkt.pod import pods
from pyrkt.pod.runopts import EXTENSION_PREFIXES

ROOT_VERBS = {"run-prepared", "stop", "rm", "gc", "enter", "export"}


class Flags:
    def __init__(self, values: dict[str, str], positional: list[str], rest: list[str]) -> None:
        self.values = values
        self.positional = positional
        self.rest = rest  # after a lone "--"

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def flag(self, name: str) -> bool:
        v = self.values.get(name)
        return v is not None and parse_bool(name, v)


def parse_flags(
    argv: list[str],
    value_flags: set[str],
    bool_flags: set[str],
    *,
    stop_at_positional: bool,
    extensions: bool = False,
) -> Flags:
    values: dict[str, str] = {}
    pos: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok == "--":
            rest = argv[i:]
            break
        if not tok.startswith("-") or tok == "-":
            pos.append(tok)
            if stop_at_positional:
                rest = argv[i:]
                break
            continue
        name, eq, val = tok.partition("=")
        if not name.startswith("--"):
            name = "-" + name
        if name in ("--help", "-h", "--h"):
            values["--help"] = "true"
        elif name in bool_flags:
            values[name] = val if eq else "true"
        elif name in value_flags or (extensions and name.startswith(EXTENSION_PREFIXES)):
            if not eq:
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: {name}")
                val = argv[i]
                i += 1
            values[name] = val
        else:
            raise UsageError(f"unknown flag: {name}")
    return Flags(values, pos, rest)


_DUR = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, flag: str) -> float:
    """Go duration ("30m", "1h30m", "0s", "500ms") in seconds."""
    t = text.strip()
    if t == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DUR.finditer(t):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(t) or not t:
        raise UsageError(f"invalid duration {text!r} for {flag}")
    return total


def go_duration(seconds: float) -> str:
    """A duration as Go prints one (rkt's messages do): "30m0s", "1h0m0s", "1.5s", "0s"."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{ns / size:.9f}".rstrip("0").rstrip(".") + unit
    h, rest = divmod(ns, 3_600_000_000_000)
    m, rest = divmod(rest, 60_000_000_000)
    secs = f"{rest / 1e9:.9f}".rstrip("0").rstrip(".") + "s"
    if h:
        return f"{h}h{m}m{secs}"
    return f"{m}m{secs}" if m else secs


def _uuid_arg(g: GlobalOptions, f: Flags, verb: str) -> pods.Pod:
    uuid_file = f.get("--uuid-file")
    if uuid_file:
        if f.positional:
            raise UsageError("give either a UUID or --uuid-file, not both")
        return _retrieve(g, pods.read_uuid_file(Path(uuid_file)))
    if len(f.positional) != 1:
        raise UsageError(f"{verb} needs exactly one pod UUID")
    return _retrieve(g, f.positional[0])


def _retrieve(g: GlobalOptions, uuid: str) -> pods.Pod:
    """The pod, or rkt's "problem retrieving pod: ..."."""
    try:
        return pods.lookup(g.dir, uuid)
    except (NotFound, Ambiguous) as e:
        raise RktError(f"problem retrieving pod: {e}") from None


# ---- verbs --------------------------------------------------------------------------


def cmd_list(g: GlobalOptions, f: Flags) -> int:
    from pyrkt.pod.status import pod_info

    fmt = podfmt.check_format(f.get("--format"))
    full = f.flag("--full")
    infos = []
    for pod in pods.all_pods(g.dir):
        try:
            infos.append(pod_info(pod))
        except RktError:
            continue
    if fmt:
        data = [podfmt.pod_json(i) for i in infos]
        print(json.dumps(data, indent="\t" if fmt == "json-pretty" else None))
        return 0
    rows: list[list[str]] = []
    if not f.flag("--no-legend"):
        hdr = ["UUID", "APP", "IMAGE NAME"] + (["IMAGE ID"] if full else [])
        rows.append([*hdr, "STATE", "CREATED", "STARTED", "NETWORKS"])
    for info in infos:
        when = podfmt.go_time if full else podfmt.humanize
        apps = info.manifest.get("apps") or [{}]
        for app in apps:
            img_id = str((app.get("image") or {}).get("id", ""))
            row = [info.uuid if full else info.uuid[:8], str(app.get("name", "-")),
                   podfmt.image_label(app)]  # fmt: skip
            if full:
                row.append(img_id)
            row += [str(info.state), when(info.created), when(info.started),
                    podfmt.networks_str(info)]  # fmt: skip
            rows.append(row)
    if rows:
        print(podfmt.tab_table(rows))
    return 0


def _wait(pod: pods.Pod, timeout: float | None, ready: bool) -> None:
    from pyrkt.pod.status import read_pid

    deadline = None if timeout is None or timeout <= 0 else time.monotonic() + timeout
    while True:
        pod.refresh()
        state = pod.state()
        if ready:
            if state is pods.State.RUNNING and read_pid(pod.path) is not None:
                return
            if state not in (pods.State.PREPARED, pods.State.RUNNING, pods.State.PREPARING,
                             pods.State.EMBRYO):  # fmt: skip
                raise RktError(f"pod {pod.uuid} will never be ready (state: {state})")
        elif state not in (pods.State.RUNNING, pods.State.PREPARED, pods.State.PREPARING,
                           pods.State.EMBRYO):  # fmt: skip
            return
        if deadline is not None and time.monotonic() > deadline:
            raise RktError(f"timed out waiting for pod {pod.uuid}")
        time.sleep(0.05)


def _wait_arg(value: str | None, flag: str) -> tuple[bool, float | None]:
    if value is None:
        return False, None
    low = value.lower()
    if low in ("true", "1", "yes"):
        return True, None
    if low in ("false", "0", "no"):
        return False, None
    return True, parse_duration(value, flag)


def cmd_status(g: GlobalOptions, f: Flags) -> int:
    from pyrkt.pod.status import pod_info

    fmt = podfmt.check_format(f.get("--format"))
    pod = _uuid_arg(g, f, "status")
    wait, wait_t = _wait_arg(f.values.get("--wait"), "--wait")
    wait_ready, ready_t = _wait_arg(f.values.get("--wait-ready"), "--wait-ready")
    if wait_ready:
        _wait(pod, ready_t, ready=True)
    if wait:
        _wait(pod, wait_t, ready=False)
    info = pod_info(pod)
    if fmt:
        print(json.dumps(podfmt.pod_json(info), indent="\t" if fmt == "json-pretty" else None))
        return 0
    S = pods.State
    lines = [f"state={info.state}"]
    if info.created:
        lines.append(f"created={podfmt.go_time(info.created)}")
    if info.started:
        lines.append(f"started={podfmt.go_time(info.started)}")
    exited = info.state in (S.EXITED, S.EXITED_GARBAGE, S.DELETING, S.GARBAGE)
    if exited and info.finished:
        lines.append(f"finished={podfmt.go_time(info.finished)}")
    if info.state is S.RUNNING or exited:
        lines.append(f"networks={podfmt.networks_str(info)}")
    if (info.state is S.RUNNING or exited) and info.pid is not None:
        lines.append(f"pid={info.pid}")
        lines.append(f"exited={'true' if exited else 'false'}")
    if exited:
        lines += [f"app-{name}={code}" for name, code in info.exit_codes.items()]
        if info.failure:  # ours: why the apps without an app- line have no exit code
            lines.append(f"failure={info.failure}")
    print("\n".join(lines))
    return 0


def _targets(f: Flags, verb: str) -> list[str]:
    """The pods named: the UUIDs, or --uuid-file (one or the other, as rkt)."""
    if f.positional and f.get("--uuid-file"):
        raise UsageError(f"{verb}: give either UUIDs or --uuid-file, not both")
    if f.get("--uuid-file"):
        return [pods.read_uuid_file(Path(f.get("--uuid-file")))]
    if not f.positional:
        raise UsageError(f"{verb} needs at least one pod UUID")
    return list(f.positional)


def _err(verb: str, msg: str) -> None:
    print(f"{verb}: {msg}", file=sys.stderr)


def cmd_stop(g: GlobalOptions, f: Flags) -> int:
    """rkt's stop: `"UUID"` for each pod stopped, `pod "UUID" is already stopped` for
    one that exited; the failures counted on stderr, exit 254 if any."""
    from pyrkt.stage0.lifecycle import stop

    errors = 0
    after_run = (pods.State.EXITED, pods.State.EXITED_GARBAGE, pods.State.DELETING,
                 pods.State.GARBAGE)  # fmt: skip
    for t in _targets(f, "stop"):
        try:
            pod = pods.lookup(g.dir, t)
        except RktError as e:
            _err("stop", f"cannot get pod: {e}")
            errors += 1
            continue
        q = go_quote(pod.uuid)
        state = pod.state()
        if state in after_run:
            print(f"pod {q} is already stopped")
            continue
        if state is not pods.State.RUNNING:
            _err("stop", f"pod {q} is not running")
            errors += 1
            continue
        try:
            stop(g, pod, force=f.flag("--force"))
            print(q)
        except RktError as e:
            _err("stop", f"error stopping {q}: {e}")
            errors += 1
    if errors:
        _err("stop", f"failed to stop {errors} pod(s)")
        return 254
    return 0


def cmd_rm(g: GlobalOptions, f: Flags) -> int:
    from pyrkt.stage0.lifecycle import remove

    failed = False
    for t in _targets(f, "rm"):
        try:
            pod = pods.lookup(g.dir, t)
        except RktError as e:
            _err("rm", f"cannot get pod: {e}")
            failed = True
            continue
        try:
            remove(g, pod, lambda note: _err("rm", note))
            print(go_quote(pod.uuid))
        except RktError as e:
            _err("rm", str(e))
            failed = True
        finally:
            pod.close()
    if failed:
        _err("rm", "failed to remove one or more pods")
        return 254
    return 0


GC_MOVED = {"exited": "moving pod {q} to garbage",
            "aborted": "moving failed prepare {q} to garbage",
            "expired": "moving expired prepared pod {q} to garbage"}  # fmt: skip


def cmd_gc(g: GlobalOptions, f: Flags) -> int:
    from pyrkt.stage0.lifecycle import gc

    grace = parse_duration(f.get("--grace-period", "30m"), "--grace-period")
    expire = parse_duration(f.get("--expire-prepared", "24h"), "--expire-prepared")
    for ev in gc(g, grace=grace, expire_prepared=expire, mark_only=f.flag("--mark-only")):
        q = go_quote(ev.uuid)
        if ev.what in GC_MOVED:
            _err("gc", GC_MOVED[ev.what].format(q=q))
        elif ev.what == "removing":
            print(f"Garbage collecting pod {q}", flush=True)
        elif ev.detail == "still within grace period":
            _err("gc", f"pod {q} not removed: still within grace period "
                       f"({go_duration(grace)})")
        else:
            _err("gc", f"pod {q} not removed: {ev.detail}")
    return 0


def cmd_cat_manifest(g: GlobalOptions, f: Flags) -> int:
    from pyrkt.stage1 import contract

    pod = _uuid_arg(g, f, "cat-manifest")
    try:
        data = json.loads(contract.pod_manifest(pod.path).read_text())
    except (OSError, ValueError) as e:
        raise RktError(f"pod {pod.uuid} has no readable pod manifest") from e
    pretty = parse_bool("--pretty-print", f.get("--pretty-print", "true"))
    print(json.dumps(data, indent="\t" if pretty else None))
    return 0


def cmd_enter(g: GlobalOptions, f: Flags) -> int:
    from pyrkt.stage0.lifecycle import enter

    if not f.positional:
        raise UsageError("enter needs a pod UUID")
    pod = _retrieve(g, f.positional[0])
    cmd = f.rest[1:] if f.rest[:1] == ["--"] else f.rest
    enter(g, pod, f.get("--app"), cmd)


def cmd_run_prepared(g: GlobalOptions, f: Flags) -> int:
    from pyrkt.cli import runflags as rf
    from pyrkt.pod.runopts import RunOptions
    from pyrkt.stage0.run import exec_stage1

    pod = _uuid_arg(g, f, "run-prepared")
    if pod.folder is not pods.Folder.PREPARED:
        raise RktError(f"pod {pod.uuid} is not prepared (state: {pod.state()})")
    if not pod.try_lock():
        raise RktError(f"pod {pod.uuid} is in use")
    if pod.folder is not pods.Folder.PREPARED:
        raise RktError(f"pod {pod.uuid} is not prepared (state: {pod.state()})")
    if f.get("--net"):
        from pyrkt.cli.run import check_net

        check_net(g, f.get("--net"))
    ro = RunOptions(
        net=f.get("--net", "default") or "default",
        hostname=f.get("--hostname") or f"rkt-{pod.uuid}",
        interactive=f.flag("--interactive"),
        dns=rf.split_list([f.get("--dns")]),
        dns_search=rf.split_list([f.get("--dns-search")]),
        dns_opt=rf.split_list([f.get("--dns-opt")]),
        dns_domain=f.get("--dns-domain"),
        hosts_entries=rf.parse_hosts_entries(
            [f.get("--hosts-entry")] if f.get("--hosts-entry") else []
        ),
        extra=tuple((k[2:], v) for k, v in f.values.items() if k.startswith(EXTENSION_PREFIXES)),
    )
    exec_stage1(g, pod, ro)


def cmd_export(g: GlobalOptions, f: Flags) -> int:
    from pyrkt.stage0.export import export

    if len(f.positional) != 2:
        raise UsageError("usage: rkt export [--app=NAME] [--overwrite] UUID OUTPUT.aci")
    pod = _retrieve(g, f.positional[0])
    out = Path(f.positional[1])
    if out.exists() and not f.flag("--overwrite"):
        raise RktError(f"{out} already exists", "use --overwrite")
    export(g, pod, f.get("--app"), out)
    return 0


VERB_FLAGS: dict[str, tuple[set[str], set[str]]] = {
    "list": ({"--format"}, {"--full", "--no-legend"}),
    "status": ({"--format", "--uuid-file", "--wait", "--wait-ready"}, set()),
    "stop": ({"--uuid-file"}, {"--force"}),
    "rm": ({"--uuid-file"}, set()),
    "gc": ({"--grace-period", "--expire-prepared"}, {"--mark-only"}),
    "cat-manifest": ({"--uuid-file"}, {"--pretty-print"}),
    "enter": ({"--app"}, set()),
    "export": ({"--app"}, {"--overwrite"}),
    "run-prepared": (
        {
            "--net", "--dns", "--dns-search", "--dns-opt", "--dns-domain", "--hosts-entry",
            "--hostname",
        },
        {"--interactive", "--mds-register"},
    ),
}

VERB_FUNCS = {
    "list": cmd_list,
    "status": cmd_status,
    "stop": cmd_stop,
    "rm": cmd_rm,
    "gc": cmd_gc,
    "cat-manifest": cmd_cat_manifest,
    "enter": cmd_enter,
    "export": cmd_export,
    "run-prepared": cmd_run_prepared,
}


def main(argv: list[str], g: GlobalOptions) -> int:
    verb = argv[0]
    value_flags, bool_flags = VERB_FLAGS[verb]
    args = argv[1:]
    if verb == "status":
        # --wait / --wait-ready take an optional value: only in the --flag=value form
        args = [a + "=true" if a in ("--wait", "--wait-ready") else a for a in args]
    f = parse_flags(args, value_flags, bool_flags, stop_at_positional=verb == "enter",
                    extensions=verb == "run-prepared")  # fmt: skip
    if f.flag("--help"):
        flags = " ".join(f"[{x}]" for x in sorted(value_flags | bool_flags))
        print(f"Usage: rkt {verb} {flags}")
        return 0
    if f.get("--app"):  # an app of the pod: an AC name (rkt: types.NewACName)
        from pyrkt.appc.validate import ac_name

        ac_name(f.get("--app"), "--app")
    if verb in ROOT_VERBS and os.geteuid() != 0:
        raise PermissionRequired()
    return VERB_FUNCS[verb](g, f)
