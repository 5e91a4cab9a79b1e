"""`rkt enter` into a running VM pod: with a terminal vs without, side by side.

One pod (busybox, `sleep`) is booted once; then, alternating, `rkt enter UUID /bin/true`
with stdin on a pty (the terminal path: `tty` request, rkt-exec --tty, the rkt.tty port)
and with stdin on /dev/null (the one-request path over the 9p share). Prints both
medians and their ratio, and the keystroke echo round trip inside a terminal session
(a byte typed on the host pty until the guest's echo is back).

    sudo .venv/bin/python bench/kvm_enter.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

import kvm_helpers as kh
import pexpect

from pyrkt.stage1.build.aci import Flavor, Hypervisor, build_stage1_aci
from pyrkt.stage1.kvm import accel


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kvm-enter-bench-"))
    stage1 = build_stage1_aci(Flavor.KVM, work / "s1", Hypervisor.QEMU)
    image = kh.busybox_aci(work / "aci")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "vt100",
           accel.ENV_FORCE: os.environ.get(accel.ENV_FORCE, "tcg")}
    d = work / "rkt"
    rkt = [sys.executable, "-m", "pyrkt", f"--dir={d}"]
    uuid_file = work / "uuid"
    run = subprocess.Popen(
        [*rkt, "run", "--insecure-options=image", "--net=none", f"--stage1-path={stage1}",
         f"--uuid-file-save={uuid_file}", str(image), "--exec", "/bin/sleep", "--", "3600"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env)
    try:
        uuid = ""
        for _ in range(3000):
            uuid = uuid_file.read_text().strip() if uuid_file.exists() else ""
            if uuid and any((p / "kvm/ctl/started").exists() for p in kh.pod_dirs(d)):
                break
            time.sleep(0.1)
        enter = [*rkt, "enter", uuid]
        plain: list[float] = []
        term: list[float] = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            subprocess.run([*enter, "/bin/true"], check=True, env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            plain.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            p = pexpect.spawn(enter[0], [*enter[1:], "/bin/true"], env=env, timeout=120)
            p.expect(pexpect.EOF)
            p.close()
            term.append(time.perf_counter() - t0)
            assert p.exitstatus == 0, p.before
        p = pexpect.spawn(enter[0], enter[1:], env=env, timeout=120, encoding="utf-8")
        p.expect("# ")
        echo: list[float] = []
        for ch in "abcdefghijklmnopqrst":
            t0 = time.perf_counter()
            p.send(ch)
            p.expect_exact(ch)
            echo.append(time.perf_counter() - t0)
        p.sendcontrol("u")
        p.sendline("exit")
        p.expect(pexpect.EOF)
        p.close()
        mp, mt = statistics.median(plain), statistics.median(term)
        print(f"accel {env[accel.ENV_FORCE]}, {a.runs} runs each, load {os.getloadavg()[0]:.1f}")
        print(f"rkt enter /bin/true, no terminal:   median {mp * 1000:.0f} ms")
        print(f"rkt enter /bin/true, with terminal: median {mt * 1000:.0f} ms")
        print(f"terminal / no terminal: {mt / mp:.2f}")
        print(f"keystroke echo round trip: median {statistics.median(echo) * 1000:.1f} ms, "
              f"max {max(echo) * 1000:.1f} ms")
    finally:
        if uuid:
            subprocess.run([*rkt, "stop", "--force", uuid], env=env, capture_output=True)
        run.wait(timeout=120)
        subprocess.run([*rkt, "gc", "--grace-period=0s"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
