"""/etc/hostname, /etc/hosts and /etc/resolv.conf for a pod's apps, written once per
pod and bind-mounted into every app. The contents come from pyrkt.net's renderers
(--dns*, --hosts-entry, and the DNS that CNI networks returned)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pyrkt.net.dns import CniDns, render_hosts, render_resolv_conf
from pyrkt.stage1.plan import DnsPlan


def write_pod_etc(
    folder: Path,
    hostname: str,
    dns: DnsPlan,
    cni_dns: Sequence[CniDns] = (),
    pod_ip: str | None = None,
) -> dict[str, Path]:
    """Write the pod's files into folder; {"/etc/<name>": file} to bind into each app.
    No resolv.conf entry means "leave the image's own file alone"."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "hostname": hostname + "\n",
        "hosts": render_hosts(hostname, dns, pod_ip),
        "resolv.conf": render_resolv_conf(dns, tuple(cni_dns)),
    }
    out: dict[str, Path] = {}
    for name, text in files.items():
        if text is None:
            continue
        p = folder / name
        p.write_text(text)
        p.chmod(0o644)
        out["/etc/" + name] = p
    return out
