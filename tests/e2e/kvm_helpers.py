"""Helpers for the kvm stage1 tests: hand-built pod folders booted with the real runner.

`make_pod` builds `POD/stage1/rootfs` with the kvm assets (kernel + initramfs, cached
once per session) and a busybox rootfs per app, as stage0 would leave them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid as uuidlib
from pathlib import Path

from pyrkt.record import replace
from pyrkt.stage1 import contract
from pyrkt.stage1.kvm import assets
from pyrkt.stage1.kvm.runner import kvm_dir
from pyrkt.stage1.plan import AppPlan, PodPlan
from support.procs import qemu_pids

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "echo", "cat", "true", "false", "sleep", "hostname", "nproc", "id", "touch",
           "env", "grep", "ls", "mkdir", "rm", "awk", "trap", "kill")


def busybox_rootfs(root: Path) -> None:
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / "etc").mkdir(exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")


def app(name: str, *argv: str, **kw: object) -> AppPlan:
    base = AppPlan(name=name, rootfs=Path("/"), argv=tuple(argv),
                   env=(("PATH", "/bin"), ("AC_APP_NAME", name)))
    return replace(base, **kw)  # type: ignore[arg-type]


def make_pod(
    base: Path, assets_dir: Path, apps: list[AppPlan], **kw: object
) -> tuple[Path, PodPlan]:
    """A pod folder at base/pods/run/<uuid> with kvm assets copied from assets_dir."""
    uuid = str(uuidlib.uuid4())
    pod = base / "pods" / "run" / uuid
    s1 = contract.stage1_rootfs(pod)
    (s1 / assets.ASSET_DIR).mkdir(parents=True)
    for f in (assets.KERNEL, assets.INITRD):
        shutil.copy(assets_dir / assets.ASSET_DIR / f, s1 / assets.ASSET_DIR / f)
    planned = []
    for a in apps:
        root = contract.app_rootfs(pod, a.name)
        busybox_rootfs(root)
        planned.append(replace(a, rootfs=root))
    plan = PodPlan(uuid=uuid, hostname=f"rkt-{uuid}", apps=tuple(planned), net="none")
    plan = replace(plan, **kw)  # type: ignore[arg-type]
    return pod, plan


def diagnostics(pod: Path) -> str:
    """The hypervisor command line and serial log, for a failing test's output."""
    out = []
    for name in ("cmdline", "serial.log"):
        p = kvm_dir(pod) / name
        out.append(f"--- {p}:\n" + (p.read_text(errors="replace") if p.exists() else "(none)"))
    return "\n".join(out)


ACI_MANIFEST = """{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/busybox",
"labels":[{"name":"version","value":"1.0"},{"name":"arch","value":"amd64"},
{"name":"os","value":"linux"}],
"app":{"exec":["/bin/sh","-c","echo default-exec"],"user":"0","group":"0",
"environment":[{"name":"FROM_IMAGE","value":"image"}]}}"""


def busybox_aci(work: Path) -> Path:
    """A busybox ACI (what `rkt run` is given in the kvm end-to-end tests)."""
    busybox_rootfs(work / "rootfs")
    return pack_aci(work)


def every_applet(root: Path) -> None:
    """Link each of busybox's applets in root/bin (after `busybox_rootfs`)."""
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if not os.path.lexists(root / "bin" / applet):
            (root / "bin" / applet).symlink_to("busybox")


def pack_aci(work: Path, name: str = "busybox.aci") -> Path:
    """work/rootfs with ACI_MANIFEST as the ACI work/name."""
    import tarfile

    (work / "manifest").write_text(ACI_MANIFEST)
    aci = work / name
    with tarfile.open(aci, "w") as tar:
        tar.add(work / "manifest", arcname="manifest")
        tar.add(work / "rootfs", arcname="rootfs")
    return aci


def pod_dirs(rkt_dir: Path) -> list[Path]:
    return sorted(p for p in (rkt_dir / "pods").glob("*/*") if p.is_dir())


def all_diagnostics(rkt_dir: Path) -> str:
    return "\n".join(f"=== pod {p.name}\n{diagnostics(p)}" for p in pod_dirs(rkt_dir))


qemu_pids_for = qemu_pids  # the name the kvm tests use


def kill_and_gc(rkt_dir: Path, env: dict[str, str], timeout: float = 300) -> None:
    """Teardown after a failed or finished VM test: SIGKILL every QEMU of the pods under
    rkt_dir, then `rkt gc --grace-period=0s` (which must release the rest)."""
    for pod in pod_dirs(rkt_dir):
        for pid in qemu_pids_for(str(pod)):
            os.kill(pid, signal.SIGKILL)
    subprocess.run([sys.executable, "-m", "pyrkt", f"--dir={rkt_dir}", "gc",
                    "--grace-period=0s"], capture_output=True, timeout=timeout, env=env,
                   check=False)


def template_ram_of(rkt_dir: Path) -> set[Path]:
    """The VM template RAM files (and their owner files) that rkt dir's templates or
    builds own, in the host-wide folder other rkt dirs (other test sessions) share."""
    from pyrkt.stage1.kvm.templates import store

    out: set[Path] = set()
    for owner in store.RAM_ROOT.glob("*.owner"):
        try:
            text = owner.read_text()
        except OSError:  # removed meanwhile
            continue
        if str(rkt_dir) in text:
            out |= {p for p in (owner, owner.with_suffix(".ram")) if p.exists()}
    return out
