"""An existing network namespace (CNI's, made by podman or containerd's CRI) for a VM.

For each Ethernet interface in the namespace (eth0...) a tap `rkttapN` is made beside
it and joined to it by tc redirects (`pyrkt.net.tap.attach_tap`, as the kvm stage1
does for rkt's own CNI networks); QEMU, started inside the namespace, opens the taps;
the guest takes each interface's MAC, addresses and routes. The namespace itself
belongs to the caller: `detach` removes only what `attach` added.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pyrkt import proc
from pyrkt.errors import CommandFailed, RktError
from pyrkt.net.tap import IfaceState, attach_tap, detach_tap, read_iface

TAP_PREFIX = "rkttap"


def is_own_namespace(netns: Path) -> bool:
    """netns is the network namespace this process is in (the host's, for a runtime)."""
    a, b = os.stat(netns), os.stat("/proc/self/ns/net")
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def ether_interfaces(netns: Path) -> list[str]:
    """The namespace's Ethernet interfaces (no loopback, none of our taps), in order."""
    if not netns.exists():
        raise RktError(f"network namespace {netns} does not exist")
    if is_own_namespace(netns):
        raise RktError(
            f"network namespace {netns} is the runtime's own (the host's): refused",
            "a VM container takes its namespace's interfaces; give it a namespace of its own",
        )
    out = proc.output(["nsenter", f"--net={netns}", "--", "ip", "-j", "link", "show"])
    links = json.loads(out or "[]")
    return [
        str(link["ifname"]) for link in links
        if link.get("link_type") == "ether" and not str(link.get("ifname", "")).startswith(
            TAP_PREFIX)
    ]


def attach(netns: Path) -> tuple[list[tuple[str, str]], list[IfaceState]]:
    """Taps for every interface of netns: ([(tap, ifname)], the interfaces' states)."""
    done: list[tuple[str, str]] = []
    states: list[IfaceState] = []
    try:
        for i, ifname in enumerate(ether_interfaces(netns)):
            tap = f"{TAP_PREFIX}{i}"
            try:
                attach_tap(netns, ifname, tap)
            except CommandFailed as e:
                detach_tap(netns, tap)  # ours; ifname's qdisc may be another VM's
                raise RktError(
                    f"cannot give {ifname} of network namespace {netns} to the VM: {e}",
                    "one VM container per network namespace: is another one using it?",
                ) from e
            done.append((tap, ifname))
            states.append(read_iface(netns, ifname))
    except BaseException:
        detach(netns, done)
        raise
    return done, states


def detach(netns: Path, taps: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> None:
    """Remove the taps and the redirects attach made; nothing for what is gone."""
    for tap, ifname in taps:
        detach_tap(netns, tap, ifname)
