"""A networked VM pod's QEMU, confined (stage1/kvm/jail.py): it runs in the pod's network
namespace (the tap CNI's interface is redirected to), attaches to the tap without
CAP_NET_ADMIN, and the guest serves HTTP through it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_net_kvm import Rkt, http_get, rkt, stage1, web_aci

from pyrkt.net.netns import NETNS_DIR, netns_name

pytestmark = [pytest.mark.qemu, pytest.mark.root, pytest.mark.cni]
__all__ = ["rkt", "stage1", "web_aci"]  # the fixtures of test_net_kvm


def test_qemu_runs_in_the_pods_netns_without_net_admin(rkt: Rkt, web_aci: Path) -> None:
    uuid, ips = rkt.start("--net=default", str(web_aci))
    assert http_get(ips["default"]) == "hello from a VM pod\n"
    pid = int((rkt.dir / "pods/run" / uuid / "pid").read_text())
    # The netns file is bound in the pod's mount namespace (stage0's, where `rkt run`,
    # now rkt-wait, lives): look at it from there.
    waiter = rkt.procs[-1].pid
    netns = Path(f"/proc/{waiter}/root") / str(NETNS_DIR / netns_name(uuid)).lstrip("/")
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(netns).st_ino
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    assert "CapEff:\t000000000000000b" in status  # CHOWN, DAC_OVERRIDE, FOWNER only
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
