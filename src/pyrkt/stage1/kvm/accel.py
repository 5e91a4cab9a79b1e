"""KVM or TCG: decided by booting the real guest kernel under KVM, cached per host.

A bare `KVM_CREATE_VM` is not enough (a nested host may create VMs that cannot boot a
Linux guest), so the probe boots the pod's own kernel and initramfs with `rkt.probe=1`
(the init powers off at once) under `-accel kvm` with a short timeout. The result is
cached in `<cache>/accel.json`, keyed by the host kernel release and the guest kernel's
hash. `RKT_KVM_ACCEL=kvm|tcg` (or the stage1 flag `--kvm-accel=`) skips the probe.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from pyrkt import log
from pyrkt.errors import RktError
from pyrkt.record import record
from pyrkt.stage1.kvm.vm import Accel

ENV_FORCE = "RKT_KVM_ACCEL"
PROBE_TIMEOUT_S = 10.0
CACHE_FILE = "accel.json"
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|.)")


@record
class Decision:
    accel: Accel
    reason: str


def parse_forced(value: str | None) -> Accel | None:
    if not value:
        return None
    try:
        return Accel(value.lower())
    except ValueError:
        raise RktError(f"invalid accelerator {value!r}", "use kvm or tcg") from None


def cache_key(kernel: Path, cache_dir: Path | None = None) -> str:
    """The host kernel and the guest kernel's content (its digest remembered in
    cache_dir: digests.py)."""
    from pyrkt.stage1.kvm import digests

    return f"{os.uname().release}/{digests.sha256(kernel, cache_dir)[:16]}"


def probe_argv(qemu: str, kernel: Path, initrd: Path, serial: Path) -> list[str]:
    return [
        qemu, "-nodefaults", "-no-user-config", "-nographic", "-M", "pc",
        "-accel", "kvm", "-cpu", "host", "-smp", "1", "-m", "128", "-no-reboot",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", "console=ttyS0 panic=-1 quiet rkt.probe=1",
        "-chardev", f"file,id=con,path={serial}", "-serial", "chardev:con",
    ]  # fmt: skip


def probe(kernel: Path, initrd: Path, qemu: str = "qemu-system-x86_64") -> Decision:
    """Boot the guest under KVM; TCG unless it powers off cleanly in time."""
    if not os.path.exists("/dev/kvm"):
        return Decision(Accel.TCG, "/dev/kvm does not exist")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Decision(Accel.TCG, "/dev/kvm is not accessible")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rkt-accel-") as td:
        serial = Path(td) / "serial.log"
        argv = probe_argv(qemu, kernel, initrd, serial)
        log.debug("kvm: probing KVM: " + " ".join(argv))
        try:
            p = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
        except FileNotFoundError as e:
            raise RktError(f"{qemu}: command not found", "install qemu-system-x86") from e
        try:
            _, err = p.communicate(timeout=PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            text = _ESCAPES.sub("", serial.read_text(errors="replace"))
            tail = [ln.strip() for ln in text.splitlines() if ln.strip()][-1:] or ["nothing"]
            return Decision(
                Accel.TCG,
                f"a KVM guest did not power off within {PROBE_TIMEOUT_S:.0f}s "
                f"(last console line: {tail[0]!r})",
            )
        if p.returncode != 0:
            last = (err or "").strip().splitlines()[-1:] or [f"exit status {p.returncode}"]
            return Decision(Accel.TCG, f"a KVM guest failed: {last[0]}")
    return Decision(Accel.KVM, "a KVM guest booted and powered off")


def decide(
    kernel: Path, initrd: Path, cache_dir: Path, forced: Accel | None = None
) -> Decision:
    """The accelerator for this host and kernel (forced, cached, or probed now)."""
    forced = forced or parse_forced(os.environ.get(ENV_FORCE))
    if forced is not None:
        return Decision(forced, f"forced by {ENV_FORCE} or --kvm-accel")
    cache = cache_dir / CACHE_FILE
    key = cache_key(kernel, cache_dir)
    try:
        entries: dict[str, dict[str, str]] = json.loads(cache.read_text())
    except (OSError, ValueError):
        entries = {}
    hit = entries.get(key)
    if hit is not None and hit.get("accel") in (Accel.KVM, Accel.TCG):
        return Decision(Accel(hit["accel"]), f"cached in {cache}: {hit.get('reason', '')}")
    d = probe(kernel, initrd)
    entries[key] = {"accel": d.accel.value, "reason": d.reason}
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
        tmp.write_text(json.dumps(entries, indent=1) + "\n")
        os.replace(tmp, cache)
    except OSError as e:
        log.debug(f"kvm: cannot cache the accelerator decision in {cache}: {e}")
    return d
