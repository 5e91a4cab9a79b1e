"""`rkt run` and `rkt prepare`."""

from __future__ import annotations

import os
from pathlib import Path

from pyrkt.cli import runflags as rf
from pyrkt.errors import PermissionRequired, RktError, UsageError
from pyrkt.options import GlobalOptions
from pyrkt.pod.runopts import RunOptions
from pyrkt.stage0.prepare import PrepareOptions, prepare
from pyrkt.stage0.stage1img import Stage1Flags

USAGE = """\
Usage:
  rkt {verb} [--volume=name,kind=host,...] [--mount volume=NAME,target=PATH] IMAGE \
[-- image-args...[---]]...

Pod flags: --net, --port=NAME:[HOSTIP:]HOSTPORT, --dns, --dns-search, --dns-opt,
  --dns-domain, --hosts-entry=IP=HOSTNAME|host, --hostname, --interactive,
  --uuid-file-save, --inherit-env, --set-env=NAME=VALUE, --set-env-file, --volume,
  --pod-manifest, --pull-policy=new|never|update, --stage1-{url,path,name,hash,from-dir},
  --no-overlay
App flags (after an image): --exec, --name, --working-dir, --user, --group,
  --supplementary-gids, --environment=NAME=VALUE, --readonly-rootfs, --mount, --memory,
  --cpu, --cpu-shares, --caps-retain, --caps-remove, --signature
"""

_CONFLICT_WITH_MANIFEST = ("--volume", "--port", "--set-env", "--set-env-file")


def pull_policy(a: rf.RunArgs) -> str:
    if a.flag("--no-store") and a.flag("--store-only"):
        raise UsageError("both --store-only and --no-store specified")
    if a.flag("--no-store"):
        return "update"
    if a.flag("--store-only"):
        return "never"
    return a.last("--pull-policy", "new")


def check_pod_manifest_flags(a: rf.RunArgs, policy: str) -> None:
    """rkt's list: with --pod-manifest, no image, no volume, mount, port or environment
    flag, and no pull policy but the default."""
    if a.last("--pod-manifest") and (
        a.apps
        or a.pod_mounts
        or any(a.all(f) for f in _CONFLICT_WITH_MANIFEST)
        or a.flag("--inherit-env")
        or policy in ("never", "update")
    ):
        raise UsageError("conflicting flags set with --pod-manifest (see --help)")


def build_prepare_options(a: rf.RunArgs) -> PrepareOptions:
    pod_manifest = a.last("--pod-manifest")
    policy = pull_policy(a)
    check_pod_manifest_flags(a, policy)
    from pyrkt.image.policy import parse_pull_policy

    parse_pull_policy(policy)
    vols = tuple(rf.parse_volume(v) for v in a.all("--volume"))
    names = [v.name for v in vols]
    for n in names:
        if names.count(n) > 1:
            raise UsageError(f"duplicate volume name {n!r}")
    annotations = rf.parse_annotations(a.all("--annotation"), "--annotation", acid=True)
    return PrepareOptions(
        apps=tuple(a.apps),
        volumes=vols,
        mounts=tuple(a.pod_mounts),
        ports=tuple(rf.parse_port(p) for p in a.all("--port")),
        inherit_env=a.flag("--inherit-env"),
        set_env=rf.parse_env_list(a.all("--set-env"), "--set-env"),
        set_env_file=rf.read_env_files(a.all("--set-env-file")),
        annotations=annotations,
        user_annotations=rf.parse_annotations(a.all("--user-annotation"), "--user-annotation"),
        user_labels=rf.parse_annotations(a.all("--user-label"), "--user-label"),
        pod_manifest=Path(pod_manifest) if pod_manifest else None,
        pull_policy=policy,
        stage1=Stage1Flags(
            path=a.last("--stage1-path"),
            name=a.last("--stage1-name"),
            url=a.last("--stage1-url"),
            hash=a.last("--stage1-hash"),
            from_dir=a.last("--stage1-from-dir"),
        ),
        no_overlay=a.flag("--no-overlay"),
    )


def build_run_options(a: rf.RunArgs, uuid: str) -> RunOptions:
    nets = rf.split_list(a.all("--net")) if a.all("--net") else ("default",)
    return RunOptions(
        net=",".join(nets) if nets else "default",
        hostname=a.last("--hostname") or f"rkt-{uuid}",
        interactive=a.flag("--interactive"),
        dns=rf.split_list(a.all("--dns")),
        dns_search=rf.split_list(a.all("--dns-search")),
        dns_opt=rf.split_list(a.all("--dns-opt")),
        dns_domain=a.last("--dns-domain"),
        hosts_entries=rf.parse_hosts_entries(a.all("--hosts-entry")),
        extra=a.extensions(),
    )


def check_net(g: GlobalOptions, net: str) -> None:
    """Fail on an unknown network or a bad net.d file before the pod runs, in rkt's
    stage1's words (`none` and `host` alone need no configuration: not importing NET
    saves start-up)."""
    if net in ("none", "host"):
        return
    from pyrkt.net.config import check_networks

    try:
        check_networks(net, [g.system_config, g.local_config])
    except RktError as e:
        raise RktError(f"failed to setup network: {e.message}", component="stage1") from None


def check_uuid_file(path: str) -> None:
    """--uuid-file-save's folder must exist: checked before the pod does."""
    if path and not Path(path).absolute().parent.is_dir():
        raise UsageError(f"cannot write --uuid-file-save {path}: no such folder")


def save_uuid(path: str, uuid: str) -> None:
    if path:
        try:
            Path(path).write_text(uuid + "\n")
        except OSError as e:
            raise UsageError(f"cannot write --uuid-file-save {path}: {e.strerror}") from e


def main(argv: list[str], g: GlobalOptions) -> int:
    verb = argv[0]
    a = rf.parse_run_args(argv[1:])
    if a.help:
        print(USAGE.replace("{verb}", verb))
        return 0
    if os.geteuid() != 0:
        raise PermissionRequired()
    if verb == "prepare" and (a.all("--net") or a.flag("--interactive")):
        raise UsageError("--net and --interactive are flags of run and run-prepared")
    if a.flag("--interactive") and len(a.apps) > 1:
        raise UsageError("interactive option only supports one image")
    opts = build_prepare_options(a)
    check_uuid_file(a.last("--uuid-file-save"))
    net = ",".join(rf.split_list(a.all("--net"))) or "default"
    if opts.ports and net in ("none", "host"):
        raise UsageError(f"--port flag does not work with '{net}' networking")
    if verb == "run" and a.all("--net"):
        check_net(g, net)
    pod = prepare(g, opts, durable=verb == "prepare")
    save_uuid(a.last("--uuid-file-save"), pod.uuid)
    if verb == "prepare":
        pod.close()
        # --quiet as rkt's: only the UUID on stdout (progress and messages go to stderr
        # here either way)
        print(pod.uuid)
        return 0
    from pyrkt.stage0.run import exec_stage1

    exec_stage1(g, pod, build_run_options(a, pod.uuid))
