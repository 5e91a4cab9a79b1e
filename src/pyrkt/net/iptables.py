"""A safety net after CNI DEL: remove iptables rules that still name a pod.

CNI plugins tag their rules with a comment holding the container ID (the pod UUID). A
plugin's DEL can miss some, e.g. ptp's masquerade rules when the namespace or the
address is already gone. `sweep(container_id)` deletes every rule whose text contains
the ID and then the chains those rules jumped to, once they are empty and unreferenced.
"""

from __future__ import annotations

import shlex

from pyrkt import log, proc

TABLES = ("nat", "filter", "mangle")


def _save(table: str) -> list[str]:
    cp = proc.run(["iptables-save", "-t", table], check=False, capture=True)
    return cp.stdout.splitlines() if cp.returncode == 0 else []


def sweep(container_id: str) -> int:
    """Delete leftover rules naming container_id; the number of rules removed."""
    if not container_id:
        return 0
    removed = 0
    for table in TABLES:
        lines = _save(table)
        rules = [ln for ln in lines if ln.startswith("-A ") and container_id in ln]
        if not rules:
            continue
        targets: set[str] = set()
        for rule in rules:
            args = shlex.split(rule)
            if "-j" in args:
                targets.add(args[args.index("-j") + 1])
            cp = proc.run(["iptables", "-t", table, "-D", *args[1:]], check=False, capture=True)
            removed += cp.returncode == 0
        # Chains those rules jumped to: drop them once nothing else uses them.
        lines = _save(table)
        for chain in sorted(t for t in targets if t.startswith("CNI-")):
            in_use = any(ln.startswith("-A ") and f"-j {chain}" in ln for ln in lines)
            has_rules = any(ln.startswith(f"-A {chain} ") for ln in lines)
            if not in_use and not has_rules:
                proc.run(["iptables", "-t", table, "-X", chain], check=False, capture=True)
    if removed:
        log.debug(f"net: removed {removed} leftover iptables rules of {container_id}")
    return removed
