"""What the networking tests share: a shell helper, an HTTP GET retried while a server
starts, and the host-side traces a pod may leave (netns, iptables rules, IPAM leases)."""

from __future__ import annotations

import contextlib
import http.client
import subprocess
import time
from pathlib import Path

from support.registry import free_port

__all__ = ["LEASES", "free_port", "host_leftovers", "http_get", "sh"]

LEASES = Path("/var/lib/cni/networks")  # host-local IPAM's leases


def sh(cmd: str) -> str:
    """A shell command's stdout (its failure is not an error: callers check the text)."""
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False).stdout


def http_get(ip: str, port: int = 80, path: str = "/", *, tries: int = 50,
             pause: float = 0.1) -> str:
    """GET path (retried while the server starts); the body."""
    last: Exception | None = None
    for _ in range(tries):
        try:
            c = http.client.HTTPConnection(ip, port, timeout=3)
            c.request("GET", path)
            body = c.getresponse().read().decode()
            c.close()
            return body
        except OSError as e:
            last = e
            time.sleep(pause)
    raise AssertionError(f"no HTTP answer from {ip}:{port}: {last}")


def host_leftovers(uuids: list[str]) -> list[str]:
    """The network namespaces, iptables rules and IPAM leases that name one of these pods."""
    found: list[str] = []
    netns, rules = sh("ip netns list"), sh("iptables-save")
    for u in uuids:
        if f"rkt-{u}" in netns:
            found.append(f"netns rkt-{u}")
        if u in rules:
            found.append(f"iptables rule naming {u}")
        for f in LEASES.rglob("*") if LEASES.is_dir() else []:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                if f.is_file() and u in f.read_text():
                    found.append(f"IPAM lease {f}")
    return found
