"""Kubernetes' way in: containerd's CRI plugin with rkt-runtime as a RuntimeClass
handler (`runtimes.pyrkt`, the runc v2 shim with `BinaryName`), driven over the CRI
gRPC API as the kubelet does: RunPodSandbox (a CNI bridge network of the test's own),
CreateContainer, StartContainer, ExecSync, StopContainer, RemoveContainer,
StopPodSandbox, RemovePodSandbox. The pod's infra container runs no VM; the app
container's VM gets the pod's network interface (its IP, checked from inside)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cri import Cri
from support.oci import RUNTIME, Containerd, busybox_archive, containerd, guest_release, leftovers

pytestmark = [pytest.mark.root, pytest.mark.qemu, pytest.mark.cni]

IMAGE = "localhost/busybox:1"
HANDLER = "pyrkt"
CRI_CONFIG = """
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{handler}]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{handler}.options]
        BinaryName = "{runtime}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"""


@pytest.fixture(scope="module")
def cri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Containerd, Cri, Path]]:
    pytest.importorskip("grpc", reason="needs grpcio (the test extras)")
    if not shutil.which("containerd"):
        pytest.skip("needs Debian's containerd")
    work = tmp_path_factory.mktemp("cri")
    archive = busybox_archive(work / "image")
    tag = uuid.uuid4().hex[:6]
    bridge, net = f"rktcri{tag}", f"pyrkt-cri-{tag}"
    cni = work / "cni"
    cni.mkdir()
    (cni / "10-test.conflist").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": net,
        "plugins": [{"type": "bridge", "bridge": bridge, "isGateway": False,
                     "ipMasq": False,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.234.17.0/24"}]]}}],
    }))
    extra = CRI_CONFIG.format(image=IMAGE, handler=HANDLER, runtime=RUNTIME, cni=cni)
    try:
        with containerd(work / "c", cri=True, extra=extra) as c:
            c.namespace = "k8s.io"  # the CRI plugin's namespace
            cp = c.ctr("image", "import", "--base-name", "localhost/busybox", str(archive))
            assert cp.returncode == 0, cp.stderr
            client = Cri(c.address)
            try:
                deadline = time.monotonic() + 60
                while True:  # the CRI plugin answers once it has loaded
                    try:
                        client.version()
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)
                yield c, client, work
            finally:
                client.close()
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)


def test_pod_with_a_vm_container_through_cri(cri: tuple[Containerd, Cri, Path]) -> None:
    ctd, client, work = cri
    assert client.version() == "containerd"
    logs = work / "logs"
    logs.mkdir()
    sb_config = Cri.sandbox_config("vmpod", uuid.uuid4().hex, str(logs))
    sandbox = client.run_sandbox(sb_config, HANDLER)
    cid = ""
    try:
        ip = client.sandbox_ip(sandbox)
        assert ip.startswith("10.234.17."), ip
        cid = client.create_container(sandbox, sb_config, "app", IMAGE,
                                      ["sh", "-c", "echo cri-hello; exec sleep 600"],
                                      "app.log")
        client.start_container(cid)
        out, code = client.exec_sync(cid, ["sh", "-c", "uname -r; ip -4 addr show; exit 7"])
        assert code == 7, out
        assert out.splitlines()[0] == guest_release()
        assert f"inet {ip}/" in out  # the pod's address, inside the VM
        deadline = time.monotonic() + 60
        while "cri-hello" not in (logs / "app.log").read_text():
            assert time.monotonic() < deadline, ctd.diagnostics()
            time.sleep(0.5)
        client.stop_container(cid, timeout=10)
        state, exit_code = client.container_state(cid)
        assert (state, exit_code) == (2, 143)  # exited, by the SIGTERM sent into the guest
        client.remove_container(cid)
        cid = ""
    except BaseException:
        print(ctd.diagnostics())
        raise
    finally:
        if cid:
            client.remove_container(cid)
        client.stop_sandbox(sandbox)
        client.remove_sandbox(sandbox)
    left = leftovers(ctd.runtime_root)
    assert not left, f"{left}\n{ctd.diagnostics()}"
