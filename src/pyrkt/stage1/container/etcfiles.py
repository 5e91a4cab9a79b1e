"""/etc/hostname, /etc/hosts and /etc/resolv.conf for a pod's apps, written once per
pod and bind-mounted into every app.

The contents come from pyrkt.net's renderers (which also know the DNS that CNI
returned); importing `pyrkt.net.dns` is cheap (the package imports its modules lazily).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pyrkt.net.dns import CniDns, hosts_is_fallback, render_hosts, render_resolv_conf
from pyrkt.stage1.plan import DnsPlan


def hosts_file(hostname: str, dns: DnsPlan) -> str:
    """/etc/hosts of a pod (rkt's: the hostname on 127.0.0.1)."""
    return render_hosts(hostname, dns)


def fallback_files(dns: DnsPlan) -> frozenset[str]:
    """The pod files bound only where the image has none (rkt's hosts-fallback)."""
    return frozenset({"/etc/hosts"}) if hosts_is_fallback(dns) else frozenset()


def resolv_conf(dns: DnsPlan) -> str | None:
    """/etc/resolv.conf of a pod without a CNI network; None: keep the image's own."""
    return render_resolv_conf(dns)


def write_pod_etc(
    folder: Path,
    hostname: str,
    dns: DnsPlan,
    cni_dns: Sequence[CniDns] | None = None,
) -> dict[str, Path]:
    """Write the pod's files into folder; {"/etc/<name>": file} to bind into each app.
    No resolv.conf entry means "leave the image's own file alone". cni_dns is None when
    the pod has no CNI network."""
    folder.mkdir(parents=True, exist_ok=True)
    hosts = render_hosts(hostname, dns)
    resolv = render_resolv_conf(dns, tuple(cni_dns or ()))
    out: dict[str, Path] = {}
    for name, text in (("hostname", hostname + "\n"), ("hosts", hosts),
                       ("resolv.conf", resolv)):
        if text is None:
            continue
        p = folder / name
        p.write_text(text)
        p.chmod(0o644)
        out["/etc/" + name] = p
    return out
