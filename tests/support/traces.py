"""What a pod may leave on the host, looked up by what names it: its UUID, the data dir,
the networks it joined, the process sessions its `rkt` started. Other tests and other
users of the machine create the same kinds of objects at the same time, so nothing is
compared by count: each check only matches objects one of *these* pods could have made.

    traces = Traces(data_dir, networks=["chaos-1a2b", "default-restricted"])
    traces.note_running(uuid)         # while a pod runs: its links and addresses
    traces.find([uuid], sessions=[rkt_pid], tmpdir=...)   # -> ["what", ...]

What is looked at (each one line in the result):
- pod folders: `DATA/pods/*/UUID`; staging: `DATA/cas/tmp/*`; temp files: anything in
  `tmpdir` (the TMPDIR the pods' `rkt` ran with), names holding a UUID in /tmp, /var/tmp,
  /run, /dev/shm and the folders right below them (`/run/netns/rkt-UUID`);
- mounts: this mount namespace's mount points holding a UUID or the data dir (mounts in
  other namespaces need a process to hold them: see processes);
- network namespaces: `ip netns` entries holding a UUID;
- links and routes: host interface names and pod addresses recorded while the pods ran
  (`note_running`: net-info.json and the IPAM leases naming the UUID), and addresses in
  the test's own subnets that were not there before (`Traces(...)` notes those);
- iptables (nat, filter, mangle): rules holding a UUID, and the chains CNI plugins name
  after (network, UUID) (`CNI-[DN-|SN-]<sha512 hex>`, which a rule-by-rule sweep misses
  when nothing jumps to them);
- IPAM leases naming a UUID (support.net.host_leftovers, with netns and rules);
- cgroups: any directory in any hierarchy whose path holds a UUID (pods, apps, and the
  hypervisor's own groups alike);
- processes: any process in one of `sessions`, or whose command line, environment,
  cwd, root or cgroup names a UUID or the data dir (CNI plugins carry the UUID in
  CNI_CONTAINERID, a stage1's children its pod folder as cwd, QEMU its pod paths).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
from collections.abc import Iterable
from pathlib import Path

from support.net import LEASES, host_leftovers, sh

CGROUPS = Path("/sys/fs/cgroup")
TEMP_PLACES = (Path("/tmp"), Path("/var/tmp"), Path("/run"), Path("/dev/shm"))


def cni_chains(network: str, uuid: str) -> list[str]:
    """The per-pod chain names of the reference CNI plugins (computed here, not taken
    from pyrkt): CNI- + prefix + SHA-512(network + container ID) in hex, 28 characters
    (the older library: 29, no prefix)."""
    h = hashlib.sha512((network + uuid).encode()).hexdigest()
    return [("CNI-" + p + h)[:28] for p in ("", "DN-", "SN-")] + ["CNI-" + h[:25]]


def _read(path: Path, limit: int = 1 << 16) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError:
        return []


def _link(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


class Traces:
    def __init__(self, data_dir: Path, networks: Iterable[str] = (),
                 subnets: Iterable[str] = ()) -> None:
        self.data_dir = data_dir
        self.networks = list(networks)
        self.subnets = [ipaddress.ip_network(s) for s in subnets]
        self.host_ifs: dict[str, set[str]] = {}
        self.pod_ips: dict[str, set[str]] = {}
        # before any pod: addresses already in those subnets are someone else's
        self._before = set(self._addresses())

    # -- while a pod runs ---------------------------------------------------------------

    def note_running(self, uuid: str) -> None:
        """Record the pod's host interfaces and addresses (its folder and leases say)."""
        ifs, ips = self.host_ifs.setdefault(uuid, set()), self.pod_ips.setdefault(uuid, set())
        for info in self.data_dir.glob(f"pods/*/{uuid}/net-info.json"):
            with contextlib.suppress(OSError, ValueError, TypeError):
                for entry in json.loads(info.read_text()):
                    ifs.discard("")
                    ifs.add(str(entry.get("hostIfName") or ""))
                    if entry.get("ip"):
                        ips.add(str(entry["ip"]))
        ifs.discard("")
        for lease in LEASES.glob("*/*") if LEASES.is_dir() else []:
            if uuid in _read(lease, 4096):
                ips.add(lease.name)

    # -- after gc -------------------------------------------------------------------------

    def find(self, uuids: list[str], *, sessions: Iterable[int] = (),
             tmpdir: Path | None = None) -> list[str]:
        found = host_leftovers(uuids)
        found += self._folders(uuids, tmpdir)
        found += self._mounts(uuids)
        found += self._net(uuids)
        found += self._chains(uuids)
        found += self._cgroups(uuids)
        found += self._processes(uuids, set(sessions))
        return found

    def _folders(self, uuids: list[str], tmpdir: Path | None) -> list[str]:
        found = [f"pod folder {p}" for u in uuids for p in self.data_dir.glob(f"pods/*/{u}")]
        staging = self.data_dir / "cas" / "tmp"
        found += [f"store staging {p}" for p in sorted(staging.iterdir())] \
            if staging.is_dir() else []
        if tmpdir is not None and tmpdir.is_dir():
            found += [f"temp file {p}" for p in sorted(tmpdir.iterdir())]
        for place in TEMP_PLACES:  # two levels: /run/netns/rkt-UUID, /run/pyrkt/UUID
            for entry in _scandir(place):
                if any(u in entry.name for u in uuids):
                    found.append(f"temp file {entry.path}")
                elif entry.is_dir(follow_symlinks=False):
                    found += [f"temp file {e.path}" for e in _scandir(Path(entry.path))
                              if any(u in e.name for u in uuids)]
        return found

    def _mounts(self, uuids: list[str]) -> list[str]:
        marks = [*uuids, str(self.data_dir)]
        found = []
        for line in _read(Path("/proc/self/mountinfo"), 1 << 24).splitlines():
            fields = line.split()
            if len(fields) > 4 and any(m in fields[4] for m in marks):
                found.append(f"mount {fields[4]}")
        return found

    def _net(self, uuids: list[str]) -> list[str]:
        found = []
        links = {ln.split(": ")[1].split("@")[0] for ln in sh("ip -o link").splitlines()
                 if ": " in ln}
        for u in uuids:
            found += [f"link {i} (pod {u})" for i in sorted(self.host_ifs.get(u, ())) if i in links]
            routes = sh("ip route").split()
            found += [f"route to {ip} (pod {u})" for ip in sorted(self.pod_ips.get(u, ()))
                      if ip in routes]
        found += [a for a in self._addresses() if a not in self._before]
        return found

    def _addresses(self) -> list[str]:
        out = []
        for ln in sh("ip -o addr").splitlines():
            parts = ln.split()
            if len(parts) > 3 and parts[2] in ("inet", "inet6"):
                with contextlib.suppress(ValueError):
                    addr = ipaddress.ip_interface(parts[3]).ip
                    if any(addr in net for net in self.subnets):
                        out.append(f"address {parts[3]} on {parts[1]}")
        return out

    def _chains(self, uuids: list[str]) -> list[str]:
        found = []
        for table in ("nat", "filter", "mangle"):
            chains = {ln[1:].split()[0] for ln in sh(f"iptables-save -t {table}").splitlines()
                      if ln.startswith(":")}
            for u in uuids:
                for net in self.networks:
                    found += [f"iptables {table} chain {c} ({net}, pod {u})"
                              for c in cni_chains(net, u) if c in chains]
        return found

    def _cgroups(self, uuids: list[str], depth: int = 6) -> list[str]:
        found = []
        if not CGROUPS.is_dir():
            return found
        for top, dirs, _ in os.walk(CGROUPS):
            rel = Path(top).relative_to(CGROUPS)
            if len(rel.parts) >= depth:
                dirs[:] = []
            for d in list(dirs):
                if any(u in d for u in uuids):
                    found.append(f"cgroup {Path(top) / d}")
                    dirs.remove(d)
        return found

    def _processes(self, uuids: list[str], sessions: set[int]) -> list[str]:
        marks = [*uuids, str(self.data_dir)]
        me = os.getpid()
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            d = Path(entry.path)
            try:
                fields = _read(d / "stat", 4096).rsplit(") ", 1)[1].split()
                state, sid = fields[0], int(fields[3])
            except (IndexError, ValueError):
                continue
            if state == "Z":
                continue
            cmd = _read(d / "cmdline", 4096)
            texts = [cmd, _read(d / "environ"), _link(d / "cwd"), _link(d / "root"),
                     _read(d / "cgroup", 8192)]
            if sid in sessions or any(m in t for t in texts for m in marks):
                found.append(f"process {entry.name} (session {sid}): {cmd[:200]}")
        return found
