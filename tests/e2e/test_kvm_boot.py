"""The kvm stage1's VM itself: the accelerator probe on this host, an interactive pod
left with Ctrl-a x, and 20 consecutive boots (the reliability bar for a machine type).
A failing test prints the serial console log and QEMU command line."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import kvm_helpers as kh
import pytest

from pyrkt.stage1.kvm import accel, assets
from pyrkt.stage1.kvm.runner import RunOptions, run_pod
from pyrkt.stage1.kvm.vm import Accel

pytestmark = [pytest.mark.qemu, pytest.mark.root]

BOOTS = int(os.environ.get("PYRKT_KVM_BOOTS", "20"))


@pytest.fixture(scope="module")
def stage1_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stage1 rootfs with the kvm assets (what the stage1 ACI carries)."""
    root = tmp_path_factory.mktemp("s1")
    assets.populate_stage1_rootfs(root)
    return root


@pytest.fixture(scope="module")
def host_accel(stage1_assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Accel:
    kernel, initrd = assets.asset_paths(stage1_assets)
    return accel.decide(kernel, initrd, tmp_path_factory.mktemp("cache")).accel


def test_accel_probe_decides_without_hanging(stage1_assets: Path) -> None:
    kernel, initrd = assets.asset_paths(stage1_assets)
    t0 = time.monotonic()
    d = accel.probe(kernel, initrd)
    # The probe is bounded by its own timeout (plus QEMU's exit), never a hang.
    assert time.monotonic() - t0 < accel.PROBE_TIMEOUT_S + 30
    assert d.reason
    if not os.path.exists("/dev/kvm"):
        assert d.accel is Accel.TCG


def test_consecutive_boots(stage1_assets: Path, host_accel: Accel, tmp_path: Path) -> None:
    """BOOTS pods in a row, each an app that prints and exits 3: every one must report."""
    failures = []
    for i in range(BOOTS):
        pod, plan = kh.make_pod(tmp_path / f"b{i}", stage1_assets,
                                [kh.app("a", "/bin/sh", "-c", "exit 3", cpu_limit_milli=1000,
                                        memory_limit=64 << 20)])
        rc = run_pod(pod, plan, RunOptions(accel=host_accel))
        if rc != 3:
            failures.append(f"boot {i}: exit code {rc}\n{kh.diagnostics(pod)}")
    assert not failures, "\n".join(failures)


def test_interactive_left_with_ctrl_a_x(tmp_path: Path, host_accel: Accel) -> None:
    import pexpect

    from pyrkt.stage1.build.aci import Flavor, Hypervisor, build_stage1_aci

    stage1 = build_stage1_aci(Flavor.KVM, tmp_path / "s1", Hypervisor.QEMU)
    image = kh.busybox_aci(tmp_path / "aci")
    d = tmp_path / "rkt"
    uuid_file = tmp_path / "uuid"
    env = dict(os.environ, **{accel.ENV_FORCE: host_accel.value})
    p = pexpect.spawn(sys.executable, [
        "-m", "pyrkt", f"--dir={d}", "run", "--insecure-options=image", "--net=none",
        "--interactive", f"--stage1-path={stage1}", f"--uuid-file-save={uuid_file}",
        str(image), "--exec", "/bin/sh"], env=env, encoding="utf-8", timeout=300)
    try:
        p.expect("# ")
        p.sendline("echo $((6*7)) $(hostname)")
        p.expect("42 rkt-")
        p.expect("# ")
        # the serial terminal, in the app's own /dev, also as its /dev/console
        p.sendline("busybox tty; ls /dev/console")
        p.expect("/dev/ttyS1")
        p.expect("/dev/console")
        p.expect("# ")
        p.send("\x01x")  # QEMU's escape: Ctrl-a x
        p.expect(pexpect.EOF)
        p.close()
        assert p.exitstatus == 0
        assert "Linux version" not in (p.before or "")
        uuid = uuid_file.read_text().strip()
        assert not kh.qemu_pids_for(uuid)
        st = pexpect.run(f"{sys.executable} -m pyrkt --dir={d} status {uuid}", encoding="utf-8")
        assert "state=exited" in st, st
    finally:
        if p.isalive():
            p.terminate(force=True)
        print(kh.all_diagnostics(d))
