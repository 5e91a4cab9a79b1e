"""The main job, as a user would do it: the seed's redis example in a VM.

1. build the KVM stage1 image (`rkt stage1 build --flavors=kvm`),
2. build a redis image from Debian's `redis-server` package and push it to a Docker
   registry started on loopback (Debian's `docker-registry`, filled by `skopeo`),
3. `rkt run --insecure-options=image,http --port=6379-tcp:127.0.0.1:PORT
   --stage1-path=stage1-kvm.aci docker://127.0.0.1:REG/redis` (no internet needed),
4. ask redis `PING` through the forwarded port and show the answer (`PONG`),
5. `rkt stop` the pod and `rkt gc` it, stop the registry.

`--debug` passes rkt's --debug (QEMU command line, VM size, kernel and boot messages).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.fixtures import REDIS_CONFIG  # noqa: E402
from support.images import busybox_rootfs, oci_layout, redis_rootfs  # noqa: E402
from support.registry import Auth, Registry, free_port  # noqa: E402

RKT = [str(ROOT / ".venv/bin/rkt")]


def say(msg: str) -> None:
    print(f"demo: {msg}", flush=True)


def show(argv: list[str]) -> None:
    print("$ " + " ".join(argv), flush=True)


def redis_ping(port: int) -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).decode(errors="replace").strip()
    except OSError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debug", action="store_true", help="rkt --debug (boot messages)")
    ap.add_argument("--dir", default="/var/lib/rkt", help="rkt data dir")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for PONG")
    args = ap.parse_args()
    gflags = [f"--dir={args.dir}"] + (["--debug"] if args.debug else [])

    out = ROOT / "build" / "target" / "bin"
    say("building the KVM stage1 image (stage1-kvm.aci)")
    subprocess.run([*RKT, "stage1", "build", "--flavors=kvm", "--hypervisors=qemu",
                    f"--output={out}"], check=True)
    stage1 = out / "stage1-kvm.aci"

    work = Path(tempfile.mkdtemp(prefix="pyrkt-demo-"))
    registry = Registry(work / "registry", auth=Auth.ANONYMOUS)
    rkt_proc: subprocess.Popen[bytes] | None = None
    uuid_file = work / "uuid"
    try:
        say("building a redis image from Debian's redis-server package")
        layout = work / "redis-oci"
        oci_layout(layout, [busybox_rootfs(work / "busybox-root"),
                            redis_rootfs(work / "redis-root")], REDIS_CONFIG, "latest")
        registry.start()
        registry.push(layout, "latest", "redis")
        image = registry.ref("redis")
        say(f"pushed {image} to a local registry")

        host_port = 6379 if redis_ping(6379) is None and _free(6379) else free_port()
        run = [*RKT, *gflags, "--insecure-options=image,http", "run",
               f"--stage1-path={stage1}", f"--uuid-file-save={uuid_file}",
               f"--port=6379-tcp:127.0.0.1:{host_port}", image]
        show(run)
        rkt_proc = subprocess.Popen(run, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + args.timeout
        answer = None
        while time.monotonic() < deadline and rkt_proc.poll() is None:
            answer = redis_ping(host_port)
            if answer:
                break
            time.sleep(0.5)
        if not answer:
            say("redis did not answer" + (f" (rkt exited {rkt_proc.returncode})"
                                          if rkt_proc.poll() is not None else ""))
            return 1
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(host_port), "PING"]
        show(cli)
        if shutil.which("redis-cli"):
            subprocess.run(cli, check=True)
        else:
            print(answer)
        return 0 if "PONG" in answer else 1
    finally:
        if rkt_proc is not None and uuid_file.exists():
            uuid = uuid_file.read_text().strip()
            stop = [*RKT, f"--dir={args.dir}", "stop", uuid]
            show(stop)
            subprocess.run(stop, check=False)
            try:
                rkt_proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                subprocess.run([*RKT, f"--dir={args.dir}", "stop", "--force", uuid],
                               check=False)
                rkt_proc.wait(timeout=30)
            gc = [*RKT, f"--dir={args.dir}", "gc", "--grace-period=0s"]
            show(gc)
            subprocess.run(gc, check=False)
        elif rkt_proc is not None:
            rkt_proc.kill()
            rkt_proc.wait()
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


if __name__ == "__main__":
    os.umask(0o022)
    raise SystemExit(main())
