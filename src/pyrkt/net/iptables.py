"""A safety net after CNI DEL: remove iptables rules and chains that still belong to a pod.

CNI plugins tag their rules with a comment holding the container ID (the pod UUID), and
name a pod's own chains after a hash of the network name and the container ID
(`CNI-<hash>` for ptp's and bridge's masquerading, `CNI-DN-<hash>` for portmap;
`chain_names`). A plugin's DEL can miss some: ptp and bridge tear their masquerade
chain down only when they find the pod's address in its namespace, which is gone when
the pod was killed, and a pod killed inside the ADD may have created the chain but not
yet the rule that jumps to it (an empty `CNI-...` chain nothing names but its hash).
`sweep(container_id, networks)` deletes every rule whose text contains the ID or that
jumps to one of the pod's chains, then the pod's chains (flushed first), and the other
`CNI-` chains those rules jumped to once they are empty and unreferenced.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterable

from pyrkt import log, proc

TABLES = ("nat", "filter", "mangle")
# per-pod chain prefixes after "CNI-": masquerading (ptp, bridge), portmap's DNAT, and
# the per-pod SNAT chain of portmap before v0.7
_PREFIXES = ("", "DN-", "SN-")


def chain_names(networks: Iterable[str], container_id: str) -> set[str]:
    """The chains CNI plugins name after (network, container ID): "CNI-" + prefix + the
    SHA-512 of name+ID in hex, cut to 28 characters (the reference plugins; the older
    library cut at 29)."""
    out: set[str] = set()
    for net in networks:
        digest = hashlib.sha512((net + container_id).encode()).hexdigest()
        out.update(("CNI-" + p + digest)[:28] for p in _PREFIXES)
        out.add("CNI-" + digest[:25])
    return out


def _save(table: str) -> list[str]:
    cp = proc.run(["iptables-save", "-t", table], check=False, capture=True)
    return cp.stdout.splitlines() if cp.returncode == 0 else []


def _ipt(table: str, *args: str) -> bool:
    return proc.run(["iptables", "-t", table, *args], check=False, capture=True).returncode == 0


def sweep(container_id: str, networks: Iterable[str] = ()) -> int:
    """Delete what is left of container_id's rules and chains; the number removed."""
    if not container_id:
        return 0
    own = chain_names(networks, container_id)
    removed = 0
    for table in TABLES:
        lines = _save(table)
        chains = {ln[1:].split()[0] for ln in lines if ln.startswith(":")}
        mine = own & chains
        rules = [shlex.split(ln) for ln in lines if ln.startswith("-A ")]
        rules = [r for r in rules if container_id in " ".join(r)
                 or (r[1] not in mine and "-j" in r and r[r.index("-j") + 1] in mine)]
        if not rules and not mine:
            continue
        targets = set(mine)
        for args in rules:
            if "-j" in args:
                targets.add(args[args.index("-j") + 1])
            removed += _ipt(table, "-D", *args[1:])
        for chain in mine:
            removed += _ipt(table, "-F", chain)
        # Chains those rules jumped to: drop them once nothing else uses them.
        lines = _save(table)
        for chain in sorted(t for t in targets if t.startswith("CNI-")):
            in_use = any(ln.startswith("-A ") and f"-j {chain}" in ln for ln in lines)
            has_rules = any(ln.startswith(f"-A {chain} ") for ln in lines)
            if not in_use and not has_rules and _ipt(table, "-X", chain):
                removed += 1
    if removed:
        log.debug(f"net: removed {removed} leftover iptables rules/chains of {container_id}")
    return removed
