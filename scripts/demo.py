"""The main job, as the seed says it: build rkt with the KVM stage1, then run redis in a VM.

1. build as the seed says:
   `./configure --with-stage1-flavors=kvm --with-stage1-kvm-hypervisors=lkvm,qemu && make`
   (build/target/bin/rkt, stage1-kvm-lkvm.aci, stage1-kvm-qemu.aci);
2. build a redis image from Debian's `redis-server` package and push it to a Docker
   registry started on loopback (Debian's `docker-registry`, filled by `skopeo`): these
   machines cannot reach Docker Hub;
3. run the seed's command with the built rkt, no stage1 flag (the build's default):
   `rkt run --debug --insecure-options=image,http --port=6379-tcp:127.0.0.1:PORT
   docker://127.0.0.1:REG/redis` (`http` for the loopback registry, `--port` to reach
   redis from here); `--debug` shows the QEMU command line, the VM size and the kernel's
   boot messages;
4. ask redis `PING` through the forwarded port and show the answer (`PONG`);
5. `rkt stop` the pod and `rkt rm` it, stop the registry.
"""

from __future__ import annotations

import argparse
import json
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

from support.built import SEED_CONFIGURE  # noqa: E402
from support.fixtures import REDIS_CONFIG  # noqa: E402
from support.images import busybox_rootfs, oci_layout, redis_rootfs  # noqa: E402
from support.registry import Auth, Registry, free_port, port_is_free  # noqa: E402

RKT = "build/target/bin/rkt"


def say(msg: str) -> None:
    print(f"demo: {msg}", flush=True)


def show(argv: list[str]) -> None:
    print("$ " + " ".join(argv), flush=True)


def shell(argv: list[str]) -> None:
    """Run a command in the source tree as a user would type it, failing the demo if it
    fails."""
    show(argv)
    subprocess.run(argv, cwd=ROOT, check=True)


def redis_ping(port: int) -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).decode(errors="replace").strip()
    except OSError:
        return None


def pod_uuids(rkt: list[str]) -> set[str]:
    out = subprocess.run([*rkt, "list", "--format=json"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return {str(p["name"]) for p in json.loads(out or "[]")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="", help="rkt data dir (rkt's default: /var/lib/rkt)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for PONG")
    args = ap.parse_args()
    rkt = [RKT] + ([f"--dir={args.dir}"] if args.dir else [])

    say("building rkt and the KVM stage1 as the seed says")
    shell(["./configure", *SEED_CONFIGURE])
    shell(["make"])

    work = Path(tempfile.mkdtemp(prefix="pyrkt-demo-"))
    registry = Registry(work / "registry", auth=Auth.ANONYMOUS)
    rkt_proc: subprocess.Popen[bytes] | None = None
    uuid = ""
    try:
        say("building a redis image from Debian's redis-server package")
        layout = work / "redis-oci"
        oci_layout(layout, [busybox_rootfs(work / "busybox-root"),
                            redis_rootfs(work / "redis-root")], REDIS_CONFIG, "latest")
        registry.start()
        registry.push(layout, "latest", "redis")
        image = registry.ref("redis")
        say(f"pushed {image} to a registry on loopback (Docker Hub is not reachable here)")

        host_port = 6379 if redis_ping(6379) is None and port_is_free(6379) else free_port()
        before = pod_uuids(rkt)
        run = [*rkt, "run", "--debug", "--insecure-options=image,http",
               f"--port=6379-tcp:127.0.0.1:{host_port}", image]  # fmt: skip
        say("the seed's command, with the built rkt and no stage1 flag")
        show(run)
        rkt_proc = subprocess.Popen(run, cwd=ROOT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + args.timeout
        answer = None
        while time.monotonic() < deadline and rkt_proc.poll() is None:
            answer = redis_ping(host_port)
            if answer:
                break
            time.sleep(0.5)
        new = pod_uuids(rkt) - before
        uuid = new.pop() if len(new) == 1 else ""
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
    finally:
        if rkt_proc is not None:
            _stop(rkt, rkt_proc, uuid)
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)
    if not answer or "PONG" not in answer:
        return 1
    say(f"redis answered {answer.lstrip('+')} from inside its VM; the pod is stopped and removed")
    return 0


def _stop(rkt: list[str], proc: subprocess.Popen[bytes], uuid: str) -> None:
    if not uuid:
        proc.kill()
        proc.wait()
        return
    for argv in ([*rkt, "stop", uuid], [*rkt, "stop", "--force", uuid]):
        show(argv)
        subprocess.run(argv, cwd=ROOT, check=False)
        try:
            proc.wait(timeout=60)
            break
        except subprocess.TimeoutExpired:
            continue
    rm = [*rkt, "rm", uuid]
    show(rm)
    subprocess.run(rm, cwd=ROOT, check=False)


if __name__ == "__main__":
    os.umask(0o022)
    raise SystemExit(main())
