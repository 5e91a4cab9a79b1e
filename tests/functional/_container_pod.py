"""Helpers for the container stage1 tests: busybox rootfs, pod folders, and a child
process that executes a pickled PodPlan (the executor unshares namespaces in the calling
process, so it never runs inside pytest itself)."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pyrkt.stage1 import contract
from pyrkt.stage1.plan import AppPlan, PodPlan

BUSYBOX = Path("/bin/busybox")
RKT_DEFAULT_CAPS = (
    "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER",
    "CAP_KILL", "CAP_MKNOD", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_SETUID",
    "CAP_SETGID", "CAP_SETPCAP", "CAP_SETFCAP", "CAP_SYS_CHROOT",
)  # fmt: skip
ENV = (("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),)


def busybox_rootfs(dest: Path) -> Path:
    """A rootfs with busybox and a symlink per applet."""
    (dest / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", dest / "bin" / a)
    for d in ("etc", "tmp", "proc", "sys", "dev", "root"):
        (dest / d).mkdir()
    (dest / "tmp").chmod(0o1777)
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    return dest


def new_pod(base: Path, uuid: str, template: Path, apps: Sequence[str]) -> Path:
    pod = base / uuid
    for name in apps:
        root = contract.app_rootfs(pod, name)
        root.parent.mkdir(parents=True)
        subprocess.run(["cp", "-a", str(template), str(root)], check=True)
    return pod


def app(pod: Path, name: str, *argv: str, **kw: object) -> AppPlan:
    kw.setdefault("capabilities", RKT_DEFAULT_CAPS)
    kw.setdefault("env", ENV)
    return AppPlan(name=name, rootfs=contract.app_rootfs(pod, name), argv=tuple(argv),
                   **kw)  # type: ignore[arg-type]


def start(plan: PodPlan, pod: Path, flavor: str = "container",
          **popen: object) -> subprocess.Popen[str]:
    """Start the flavor's executor on plan in a child process (stdout/stderr captured)."""
    plan_file = pod / "plan.pickle"
    plan_file.write_bytes(pickle.dumps(plan))
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        [sys.executable, __file__, flavor, str(plan_file), str(pod)], cwd=pod, text=True,
        **popen,
    )


def run(plan: PodPlan, pod: Path, timeout: float = 60,
        flavor: str = "container") -> subprocess.CompletedProcess[str]:
    p = start(plan, pod, flavor)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


if __name__ == "__main__":
    from pyrkt.errors import RktError
    from pyrkt.stage1.container import run as container
    from pyrkt.stage1.fly import run as fly

    loaded: PodPlan = pickle.loads(Path(sys.argv[2]).read_bytes())
    try:
        if sys.argv[1] == "fly":
            sys.exit(fly.execute(loaded, Path(sys.argv[3])))
        opts = container.RunOptions(seccomp=sys.argv[1] != "container-noseccomp")
        sys.exit(container.execute(loaded, Path(sys.argv[3]), opts))
    except RktError as e:
        print(f"stage1: {e}", file=sys.stderr)
        sys.exit(254)
