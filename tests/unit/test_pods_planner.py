"""The planner: pod folder -> PodPlan, built from real files, without root."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pyrkt.appc import pod as appc
from pyrkt.pod import runopts
from pyrkt.stage0.prepare import AppSpec, PrepareOptions, merge_app
from pyrkt.stage1 import contract
from pyrkt.stage1.planner import DEFAULT_CAPS, PlanError, build_plan, resolve_in_rootfs

IMAGE_APP = appc.App(
    exec=("/bin/app", "--flag"),
    user="alice",
    group="staff",
    environment=(appc.KV("FROM_IMAGE", "image"), appc.KV("SHARED", "image")),
    mount_points=(appc.MountPoint("data", "/var/data"),),
    ports=(appc.Port("http", "tcp", 80),),
)


def make_rootfs(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nstaff:x:50:\n")
    (root / "var/lib/real").mkdir(parents=True)
    (root / "var/data").symlink_to("/var/lib/real")  # absolute: resolved inside the rootfs
    (root / "up").symlink_to("../../../../..")  # tries to escape


def write_pod(pod: Path, apps: list[appc.RuntimeApp], **kw: object) -> None:
    for ra in apps:
        make_rootfs(contract.app_rootfs(pod, ra.name))
    pm = appc.PodManifest(apps=tuple(apps), **kw)  # type: ignore[arg-type]
    contract.pod_manifest(pod).write_text(pm.to_json())


def runtime_app(name: str, app: appc.App, **kw: object) -> appc.RuntimeApp:
    return appc.RuntimeApp(name, appc.ImageRef("example.com/" + name, "sha512-1"), app, **kw)  # type: ignore[arg-type]


def test_env_precedence_and_defaults(tmp_path: Path) -> None:
    opts = PrepareOptions(
        inherit_env=True,
        host_env={"FROM_HOST": "host", "FROM_IMAGE": "host", "SHARED": "host", "SET": "host"},
        set_env_file=(("SHARED", "file"), ("FILE_ONLY", "file"), ("SET", "file")),
        set_env=(("SET", "set-env"), ("PER_APP", "set-env")),
    )
    spec = AppSpec(image="x", environment=(("PER_APP", "app"),))
    app = merge_app(IMAGE_APP, spec, opts)
    write_pod(tmp_path, [runtime_app("web", app)])
    env = dict(build_plan(tmp_path).apps[0].env)
    assert env["FROM_HOST"] == "host"
    assert env["FROM_IMAGE"] == "image"  # host env never overrides the image
    assert env["SHARED"] == "file"
    assert env["FILE_ONLY"] == "file"
    assert env["SET"] == "set-env"
    assert env["PER_APP"] == "app"
    assert env["AC_APP_NAME"] == "web"
    assert env["PATH"].startswith("/usr/local/sbin")


def test_users_groups_exec_and_limits(tmp_path: Path) -> None:
    spec = AppSpec(image="x", args=("extra",), memory="42M", cpu="500m", cpu_shares=512,
                   supplementary_gids=(7, 8), working_dir="/srv")  # fmt: skip
    app = merge_app(IMAGE_APP, spec, PrepareOptions())
    write_pod(tmp_path, [runtime_app("web", app, read_only_rootfs=True)])
    plan = build_plan(tmp_path)
    a = plan.apps[0]
    assert a.argv == ("/bin/app", "--flag", "extra")
    assert (a.uid, a.gid, a.supplementary_gids) == (1000, 50, (7, 8))
    assert (a.memory_limit, a.cpu_limit_milli, a.cpu_shares) == (42_000_000, 500, 512)
    assert a.working_dir == "/srv" and a.readonly_rootfs
    assert a.capabilities == DEFAULT_CAPS and len(DEFAULT_CAPS) == 14
    assert a.rootfs == contract.app_rootfs(tmp_path, "web")
    assert plan.hostname == f"rkt-{tmp_path.name}"


def test_unknown_user_is_an_error(tmp_path: Path) -> None:
    app = merge_app(IMAGE_APP, AppSpec(image="x", user="mallory"), PrepareOptions())
    write_pod(tmp_path, [runtime_app("web", app)])
    with pytest.raises(PlanError, match="user 'mallory' not found"):
        build_plan(tmp_path)


def test_exec_override_and_numeric_ids(tmp_path: Path) -> None:
    spec = AppSpec(image="x", exec="/bin/sh", args=("-c", "true"), user="1000", group="0")
    app = merge_app(IMAGE_APP, spec, PrepareOptions())
    write_pod(tmp_path, [runtime_app("web", app)])
    a = build_plan(tmp_path).apps[0]
    assert a.argv == ("/bin/sh", "-c", "true")
    assert (a.uid, a.gid) == (1000, 0)


def test_capabilities_retain_and_remove(tmp_path: Path) -> None:
    keep = merge_app(IMAGE_APP, AppSpec(image="x", caps_retain=("net_admin", "CAP_CHOWN")),
                     PrepareOptions())  # fmt: skip
    drop = merge_app(IMAGE_APP, AppSpec(image="x", caps_remove=("CAP_NET_RAW",)),
                     PrepareOptions())  # fmt: skip
    write_pod(tmp_path, [runtime_app("keep", keep), runtime_app("drop", drop)])
    plan = build_plan(tmp_path)
    assert plan.apps[0].capabilities == ("CAP_NET_ADMIN", "CAP_CHOWN")
    assert "CAP_NET_RAW" not in plan.apps[1].capabilities
    assert len(plan.apps[1].capabilities) == 13


def test_mount_targets_resolved_inside_rootfs(tmp_path: Path) -> None:
    rootfs = tmp_path / "r"
    make_rootfs(rootfs)
    assert resolve_in_rootfs(rootfs, "/var/data/x") == "/var/lib/real/x"
    assert resolve_in_rootfs(rootfs, "/../../etc/../var/./data") == "/var/lib/real"
    assert resolve_in_rootfs(rootfs, "/up/etc") == "/etc"
    assert resolve_in_rootfs(rootfs, "/missing/dir") == "/missing/dir"
    (rootfs / "loop").symlink_to("loop")
    with pytest.raises(PlanError, match="too many levels"):
        resolve_in_rootfs(rootfs, "/loop")


def test_volumes_and_mount_points(tmp_path: Path) -> None:
    spec = AppSpec(image="x", mounts=(("scratch", "/up/tmp/s"),))
    app = merge_app(IMAGE_APP, spec, PrepareOptions())
    (tmp_path / "srv").mkdir()
    write_pod(
        tmp_path,
        [runtime_app("web", app, mounts=(appc.Mount("scratch", "/up/tmp/s"),))],
        volumes=(
            appc.Volume("data", "host", str(tmp_path / "srv"), read_only=True,
                        recursive=False),
            appc.Volume("scratch", "empty"),
        ),
    )
    mounts = {m.volume: m for m in build_plan(tmp_path).apps[0].mounts}
    assert mounts["scratch"].target == "/tmp/s"
    assert mounts["scratch"].source == tmp_path / "volumes" / "scratch"
    assert mounts["data"].target == "/var/lib/real"  # via the image's mount point
    assert mounts["data"].source == tmp_path / "srv"
    assert mounts["data"].read_only and not mounts["data"].recursive


def test_ports_resolved_against_image_port_names(tmp_path: Path) -> None:
    app = merge_app(IMAGE_APP, AppSpec(image="x"), PrepareOptions())
    write_pod(tmp_path, [runtime_app("web", app)],
              ports=(appc.ExposedPort("http", 8080, "127.0.0.1"),))  # fmt: skip
    (p,) = build_plan(tmp_path).ports
    assert (p.name, p.protocol, p.pod_port, p.host_port, p.host_ip) == (
        "http", "tcp", 80, 8080, "127.0.0.1")  # fmt: skip
    write_pod(tmp_path / "b", [runtime_app("web", app)], ports=(appc.ExposedPort("nope", 1),))
    with pytest.raises(PlanError, match="port name 'nope'"):
        build_plan(tmp_path / "b")


def test_run_options_reach_the_plan(tmp_path: Path) -> None:
    app = merge_app(IMAGE_APP, AppSpec(image="x"), PrepareOptions())
    write_pod(tmp_path, [runtime_app("web", app)])
    runopts.write(tmp_path, runopts.RunOptions(
        net="host", hostname="h1", interactive=True, dns=("8.8.8.8",),
        hosts_entries=(("10.0.0.1", "db"),)))  # fmt: skip
    plan = build_plan(tmp_path)
    assert (plan.net, plan.hostname, plan.interactive) == ("host", "h1", True)
    assert plan.dns.servers == ("8.8.8.8",)
    assert plan.dns.hosts_entries == (("10.0.0.1", "db"),)
    assert json.loads((tmp_path / "run-options.json").read_text())["net"] == "host"
    assert os.access(tmp_path / "pod", os.R_OK)
