"""rkt's network model without root: --net lists, config loading and selection, DNS and
hosts files, the guest's network script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyrkt.errors import RktError, UsageError
from pyrkt.net import parse_net_list, render_hosts, render_resolv_conf
from pyrkt.net.config import select_networks
from pyrkt.net.dns import CniDns
from pyrkt.net.tap import IfaceState, Route, guest_network_script
from pyrkt.stage1.plan import DnsPlan

HAVE_CNI = Path("/usr/lib/cni/ptp").exists()


def test_net_list_parses_rkt_syntax() -> None:
    nl = parse_net_list("net1,net2:IP=10.1.2.3;K=V")
    assert nl.names == ("net1", "net2")
    assert nl.args("net2") == "IP=10.1.2.3;K=V"
    assert nl.args("net1") == ""
    assert parse_net_list("").names == ("default",)
    assert parse_net_list("none").none and parse_net_list("host").host
    assert parse_net_list("all").all


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("a,a", "duplicate netname 'a'"),
        ("a,,b", "netname must not be empty"),
        ("host:x=y", "not supported by special netname 'host'"),
        ("a:b:c", "invalid arguments"),
        ("none,default", "'none' cannot be combined"),
        ("host,a", "'host' cannot be combined"),
    ],
)
def test_net_list_errors_are_clear(value: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle.replace("(", r"\(")):
        parse_net_list(value)


def _write(d: Path, name: str, body: dict[str, object]) -> Path:
    (d / "net.d").mkdir(parents=True, exist_ok=True)
    p = d / "net.d" / name
    p.write_text(json.dumps(body))
    return p


needs_cni = pytest.mark.skipif(not HAVE_CNI, reason="needs /usr/lib/cni plugins")


@needs_cni
def test_default_networks_and_user_networks(tmp_path: Path) -> None:
    assert [n.name for n in select_networks(parse_net_list("default"), [tmp_path])] == [
        "default"
    ]
    _write(tmp_path, "10-br.conflist", {
        "cniVersion": "1.0.0", "name": "br", "plugins": [
            {"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.9.0.0/24"}},
        ],
    })
    nets = select_networks(parse_net_list("br"), [tmp_path])
    # As in rkt: a pod that names networks but not `default` also gets default-restricted.
    assert [n.name for n in nets] == ["br", "default-restricted"]
    assert nets[0].cni_version == "1.0.0"
    assert [n.name for n in select_networks(parse_net_list("all"), [tmp_path])] == [
        "br", "default"
    ]
    assert select_networks(parse_net_list("none"), [tmp_path]) == []


@needs_cni
def test_local_config_overrides_system_and_builtin(tmp_path: Path) -> None:
    system, local = tmp_path / "sys", tmp_path / "local"
    _write(system, "a.conf", {"name": "default", "type": "ptp",
                              "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}})
    _write(local, "a.conf", {"name": "default", "type": "ptp",
                             "ipam": {"type": "host-local", "subnet": "10.2.0.0/24"}})
    (net,) = select_networks(parse_net_list("default"), [system, local])
    assert net.plugins[0]["ipam"]["subnet"] == "10.2.0.0/24"
    assert net.source.endswith("local/net.d/a.conf")


def test_unknown_network_is_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="networks not found: nosuchnet"):
        select_networks(parse_net_list("nosuchnet"), [tmp_path])


def test_bad_config_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "net.d"
    p.mkdir()
    (p / "bad.conf").write_text("{ not json")
    with pytest.raises(RktError, match=r"invalid network config .*/net.d/bad.conf"):
        select_networks(parse_net_list("default"), [tmp_path])
    (p / "bad.conf").write_text(json.dumps({"name": "x"}))
    with pytest.raises(RktError, match=r"bad.conf: plugin 0 has no \"type\""):
        select_networks(parse_net_list("x"), [tmp_path])


def test_missing_plugin_is_named(tmp_path: Path) -> None:
    p = _write(tmp_path, "x.conf", {"name": "x", "type": "nosuchplugin"})
    with pytest.raises(RktError, match="CNI plugin 'nosuchplugin' not found") as e:
        select_networks(parse_net_list("x"), [tmp_path])
    assert str(p) in str(e.value)


def test_resolv_conf_modes(tmp_path: Path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 9.9.9.9\n")
    assert render_resolv_conf(DnsPlan(servers=("host",)), host_file=host) == host.read_text()
    assert render_resolv_conf(DnsPlan(servers=("none",)), [CniDns(("1.1.1.1",))]) is None
    text = render_resolv_conf(
        DnsPlan(servers=("8.8.8.8", "8.8.4.4"), search=("a.example",), options=("ndots:2",),
                domain="example"),
        [CniDns(("1.1.1.1",))],
    )
    assert text is not None
    lines = text.splitlines()
    assert "nameserver 8.8.8.8" in lines and "nameserver 8.8.4.4" in lines
    assert "search a.example" in lines and "options ndots:2" in lines
    assert "domain example" in lines and "nameserver 1.1.1.1" not in lines
    cni = render_resolv_conf(DnsPlan(), [CniDns(("10.0.0.53",), search=("svc",))])
    assert cni is not None and "nameserver 10.0.0.53" in cni and "search svc" in cni
    assert render_resolv_conf(DnsPlan(), [CniDns()]) is None


def test_hosts_file(tmp_path: Path) -> None:
    """rkt's: its hosts-fallback text, the --hosts-entry lines after its comment, the pod's
    hostname added to the 127.0.0.1 line (AddHostsEntry)."""
    text = render_hosts("rkt-1234", DnsPlan(hosts_entries=(("10.0.0.1", "db"),
                                                          ("10.0.0.1", "db2"))))
    lines = text.splitlines()
    assert lines[:2] == ["# This is the default rkt /etc/hosts",
                         "127.0.0.1 localhost localhost.domain localhost4 "
                         "localhost4.localdomain4 rkt-1234"]
    assert lines[-3:] == ["", "# Added by rkt run --hosts-entry", "10.0.0.1 db db2"]
    host = tmp_path / "hosts"
    host.write_text("1.2.3.4 h\n")
    assert render_hosts("x", DnsPlan(hosts_entries=(("host", ""),)), host_file=host) == (
        "1.2.3.4 h\n"
    )


def test_guest_script_configures_nic_by_mac() -> None:
    st = IfaceState("eth0", "2A:B9:8C:B4:5E:EE", 1450, ("172.16.28.2/24",), (
        Route("172.16.28.1", None, True), Route("default", "172.16.28.1")))
    script = guest_network_script([st])
    assert "2a:b9:8c:b4:5e:ee" in script
    assert "ip link set dev eth0 mtu 1450 up" in script
    assert "ip addr add 172.16.28.2/24 dev eth0" in script
    assert "ip route replace 172.16.28.1 dev eth0 scope link" in script
    assert "ip route replace default via 172.16.28.1 dev eth0" in script
