"""The seed's example, as a user runs it: redis from a docker registry in a KVM pod,
`redis-cli PING` answered `PONG` through `--port` on 127.0.0.1 (and at the pod IP).
Prints every pod's serial log and QEMU command line when it fails."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import kvm_helpers as kh
import pytest

pytestmark = [pytest.mark.qemu, pytest.mark.root, pytest.mark.cni, pytest.mark.registry]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pyrkt.stage1.build.aci import Flavor, Hypervisor, build_stage1_aci

    return build_stage1_aci(Flavor.KVM, tmp_path_factory.mktemp("stage1"), Hypervisor.QEMU)


def ping(port: int, host: str = "127.0.0.1") -> str:
    cp = subprocess.run(["redis-cli", "-h", host, "-p", str(port), "PING"],
                        capture_output=True, text=True, timeout=10, check=False)
    return cp.stdout.strip()


def test_redis_in_a_vm_answers_pong_through_the_forwarded_port(
    tmp_path: Path, stage1: Path, redis_image: str
) -> None:
    d, uf = tmp_path / "rkt", tmp_path / "uuid"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        hp = s.getsockname()[1]
    rkt = [sys.executable, "-m", "pyrkt", f"--dir={d}"]
    p = subprocess.Popen([*rkt, "run", "--insecure-options=image,http",
                          f"--stage1-path={stage1}", f"--port=6379-tcp:{hp}",
                          f"--uuid-file-save={uf}", redis_image],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while ping(hp) != "PONG":
            assert p.poll() is None, f"rkt run exited {p.returncode}: {p.communicate()}"
            assert time.monotonic() < deadline, "no PONG through the forwarded port"
            time.sleep(1)
        status = subprocess.run([*rkt, "status", uf.read_text().strip()],
                                capture_output=True, text=True, check=False).stdout
        ip = next(ln.split("ip4=")[1].split(",")[0] for ln in status.splitlines()
                  if ln.startswith("networks=") and "ip4=" in ln)
        assert ping(6379, ip) == "PONG"
    except BaseException:
        print(kh.all_diagnostics(d))
        raise
    finally:
        if p.poll() is None and uf.exists():
            subprocess.run([*rkt, "stop", "--force", uf.read_text().strip()],
                           capture_output=True, check=False)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        subprocess.run([*rkt, "gc", "--grace-period=0s"], capture_output=True, check=False)
    assert subprocess.run(["ip", "netns", "list"], capture_output=True,
                          text=True).stdout.count(uf.read_text().strip()) == 0
