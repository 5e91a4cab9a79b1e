"""VM pods restored from a template (stage1/kvm/templates/), end to end under QEMU:
many pods in a row and at once (each its own RNG, boot id, hostname, address, MAC,
clock), stop/enter/SIGTERM and --interactive on restored pods (test_kvm_rkt's and
test_kvm_boot's tests, collected again here with templates on), a broken template
refused for a boot, a stage1 image whose guest speaks another template protocol
booted without one, the switch, and `rkt gc` after a `rkt run` killed while it made or
restored a template. A failing test prints every pod's serial log and QEMU command
line."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import kvm_helpers as kh
import pytest
import test_kvm_boot as boot
import test_kvm_gaps as gaps
import test_kvm_rkt as base
from test_kvm_rkt import Rkt

from pyrkt.stage1.kvm import assets, templates
from pyrkt.stage1.kvm.templates import shape, store
from pyrkt.stage1.kvm.vm import Accel

pytestmark = [pytest.mark.qemu, pytest.mark.root]

stage1 = base.stage1  # the module fixtures of test_kvm_rkt, _gaps and _boot
image = gaps.image  # busybox with every applet
accel_env = base.accel_env
rkt = base.rkt
stage1_assets = boot.stage1_assets
host_accel = boot.host_accel


def restored(pod: Path) -> bool:
    """Whether the pod's QEMU was restored (rather than booted)."""
    cmdline = pod / "kvm" / "cmdline"
    return cmdline.exists() and "-incoming defer" in cmdline.read_text()


def assert_all_restored(d: Path) -> None:
    pods = kh.pod_dirs(d)
    assert pods and all(restored(p) for p in pods), \
        "a pod booted instead of being restored\n" + kh.all_diagnostics(d)


@pytest.fixture(autouse=True)
def templates_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Templates on for every `rkt` of the test; afterwards `rkt gc --grace-period=0s`
    must leave no template and no RAM file of the test's (the RAM folder is the host's:
    other rkt dirs, other test sessions, have theirs there)."""
    monkeypatch.setenv(templates.ENV_TEMPLATE, "on")
    yield
    d = tmp_path / "rkt"
    if d.is_dir():
        kh.kill_and_gc(d, dict(os.environ))
        where = d / "cache" / store.STORE
        assert not [p for p in where.glob("*") if not p.name.endswith(".lock")]
    assert not kh.template_ram_of(tmp_path), "RAM files left behind"


# The pod lifecycle tests of test_kvm_rkt and the interactive one of test_kvm_boot, run
# again here on restored pods.
def test_enter_and_graceful_stop(rkt: Rkt, image: Path, tmp_path: Path) -> None:
    base.test_enter_and_graceful_stop(rkt, image, tmp_path)
    assert_all_restored(rkt.dir)


def test_sigterm_to_rkt_run_stops_the_pod_gracefully(rkt: Rkt, image: Path,
                                                      tmp_path: Path) -> None:
    base.test_sigterm_to_rkt_run_stops_the_pod_gracefully(rkt, image, tmp_path)
    assert_all_restored(rkt.dir)


def test_stop_force_then_gc_leaves_nothing(rkt: Rkt, image: Path, tmp_path: Path) -> None:
    base.test_stop_force_then_gc_leaves_nothing(rkt, image, tmp_path)


def test_interactive_left_with_ctrl_a_x(tmp_path: Path, host_accel: Accel) -> None:
    boot.test_interactive_left_with_ctrl_a_x(tmp_path, host_accel)
    assert_all_restored(tmp_path / "rkt")


def debug_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "template" in ln and "qemu-system" not in ln]


def made_and_restored(stderr: str) -> tuple[list[str], list[str]]:
    """The keys of the templates made, and of those restored from, said under --debug."""
    said = debug_lines(stderr)
    return ([ln.split("made VM template ")[1].split()[0] for ln in said if "made VM" in ln],
            [ln.split("restored from template ")[1].split()[0] for ln in said
             if "restored from template" in ln])


def test_first_pod_makes_the_template_then_twenty_restore(rkt: Rkt, image: Path,
                                                          tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    r = rkt.run(f"--volume=data,kind=host,source={vol}", str(image),
                "--mount=volume=data,target=/data", "--exec", "/bin/sh", "--", "-c",
                "date +%s; hostname; cat /etc/hostname; echo in-volume > /data/f; exit 7",
                debug=True)
    assert r.returncode == 7, r.stderr
    made, restored_from = made_and_restored(r.stderr)
    assert len(made) == 1 and restored_from == made, r.stderr
    # --debug shows the boot's messages, the template's (the pod did not boot).
    assert "Linux version" in r.stderr and "rkt.template=1" in r.stderr
    clock, hostname, etc_hostname = r.stdout.split()
    assert abs(int(clock) - time.time()) < 30  # the host's clock, not the template's
    assert hostname == etc_hostname and hostname.startswith("rkt-")
    assert (vol / "f").read_text() == "in-volume\n"  # its 9p shares, mounted after
    # Without the volume: one 9p device less, another template.
    r = rkt.run(str(image), "--exec", "/bin/true", debug=True)
    made2, restored2 = made_and_restored(r.stderr)
    assert len(made2) == 1 and restored2 == made2 != made, r.stderr
    for i in range(20):
        r = rkt.run(str(image), "--exec", "/bin/sh", "--", "-c", f"echo pod-{i}; exit {i % 5}")
        assert (r.returncode, r.stdout) == (i % 5, f"pod-{i}\n"), r.stderr
    r = rkt.run(str(image), "--exec", "/bin/true", debug=True)
    assert made_and_restored(r.stderr) == ([], made2), r.stderr
    assert_all_restored(rkt.dir)
    assert len(kh.pod_dirs(rkt.dir)) == 23


def test_another_vm_size_gets_another_template(rkt: Rkt, image: Path) -> None:
    keys = []
    for mem in ("256Mi", "320Mi", "256Mi"):
        r = rkt.run(f"--annotation=coreos.com/rkt/stage1/kvm/memory={mem}", str(image),
                    "--exec", "/bin/sh", "--", "-c", "grep MemTotal /proc/meminfo", debug=True)
        assert r.returncode == 0, r.stderr
        base.assert_memory(base.meminfo_kb(r.stdout), int(mem[:-2]))
        keys += made_and_restored(r.stderr)[1]
    assert keys[0] == keys[2] != keys[1]


@pytest.mark.cni
def test_four_at_once_each_their_own(rkt: Rkt, image: Path, tmp_path: Path) -> None:
    script = ("cat /proc/sys/kernel/random/boot_id; head -c 16 /dev/urandom | od -x | head -1;"
              " hostname; cat /sys/class/net/eth0/address; "
              "ip -4 addr show eth0 | awk '/inet /{print $2}'")
    procs = []
    for i in range(4):
        uf = tmp_path / f"uuid{i}"
        procs.append((uf, subprocess.Popen(
            rkt.argv("run", "--insecure-options=image", f"--stage1-path={rkt.stage1}",
                     f"--uuid-file-save={uf}", str(image), "--exec", "/bin/sh", "--", "-c",
                     script),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL)))
    seen: dict[str, set[str]] = {"boot_id": set(), "random": set(), "ip": set()}
    for uf, p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err + kh.all_diagnostics(rkt.dir)
        boot_id, rand, hostname, mac, ip = [ln.strip() for ln in out.splitlines()]
        assert restored(next(d for d in kh.pod_dirs(rkt.dir) if d.name == uf.read_text().strip()))
        uuid = uf.read_text().strip()
        assert hostname == f"rkt-{uuid}"
        pod = next(d for d in kh.pod_dirs(rkt.dir) if d.name == uuid)
        assert f"mac={mac}" in (pod / "kvm" / "cmdline").read_text()  # CNI's, not the template's
        status = rkt("status", uuid).stdout
        assert f"ip4={ip.split('/')[0]}" in status, status
        seen["boot_id"].add(boot_id)
        seen["random"].add(rand)
        seen["ip"].add(ip)
    assert all(len(v) == 4 for v in seen.values()), seen


def test_a_broken_template_is_refused_and_the_pod_boots(rkt: Rkt, image: Path) -> None:
    assert rkt.run(str(image), "--exec", "/bin/true").returncode == 0
    (tpl,) = [p for p in (rkt.dir / "cache" / store.STORE).iterdir() if p.is_dir()]
    with (tpl / store.STATE).open("r+b") as f:  # a flipped byte in QEMU's saved state
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    r = rkt.run(str(image), "--exec", "/bin/sh", "--", "-c", "echo booted; exit 4", debug=True)
    assert (r.returncode, r.stdout) == (4, "booted\n"), r.stderr
    said = debug_lines(r.stderr)
    assert any(f"template {tpl.name} is broken: its state file" in ln
               and "changed since it was made" in ln and "booting the VM" in ln
               for ln in said), said
    assert "Linux version" in r.stderr  # a boot's kernel messages, under --debug
    assert not tpl.exists()
    assert sum(not restored(p) for p in kh.pod_dirs(rkt.dir)) == 1
    # The next pod makes a new one; a RAM file changed since is refused the same way.
    assert rkt.run(str(image), "--exec", "/bin/true").returncode == 0
    meta = json.loads((tpl / store.META).read_text())
    with open(meta["ram"], "r+b") as f:
        f.write(b"\xff" * 64)
    r = rkt.run(str(image), "--exec", "/bin/sh", "--", "-c", "echo booted", debug=True)
    assert (r.returncode, r.stdout) == (0, "booted\n"), r.stderr
    assert any("its RAM file" in ln and "changed since it was made" in ln
               for ln in debug_lines(r.stderr)), r.stderr
    assert sum(not restored(p) for p in kh.pod_dirs(rkt.dir)) == 2


def with_protocol(aci: Path, out: Path, protocol: bytes) -> Path:
    """aci (a stage1 image of this tree) with its guest's template protocol replaced."""
    rel = f"rootfs/{assets.ASSET_DIR}/{assets.PROTOCOL}"
    with tarfile.open(aci) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for m in src.getmembers():
            f = src.extractfile(m) if m.isfile() else None
            if m.name == rel:
                assert f is not None and f.read() == f"{shape.PROTOCOL}\n".encode()
                f, m.size = io.BytesIO(protocol), len(protocol)
            dst.addfile(m, f)
    return out


def test_a_stage1_image_of_another_protocol_boots_without_making_a_template(
        rkt: Rkt, image: Path, tmp_path: Path) -> None:
    """A stage1 image built by a pyrkt whose guest speaks another template protocol:
    its guest would refuse the go, so no template is made for nothing; the pod boots."""
    older = shape.PROTOCOL - 1
    rkt.stage1 = with_protocol(rkt.stage1, tmp_path / "stage1-older.aci", f"{older}\n".encode())
    r = rkt.run(str(image), "--exec", "/bin/sh", "--", "-c", "echo booted; exit 6", debug=True)
    assert (r.returncode, r.stdout) == (6, "booted\n"), r.stderr
    said = [ln for ln in r.stderr.splitlines() if "template protocol" in ln]
    assert said == [f"stage1: kvm: no VM template: the stage1 image's guest speaks template "
                    f"protocol {older}, this rkt speaks {shape.PROTOCOL}; rebuild the image "
                    "with `rkt stage1 build`"], r.stderr
    assert "Linux version" in r.stderr  # a boot's kernel messages, under --debug
    assert not any(restored(p) for p in kh.pod_dirs(rkt.dir))
    assert not any("template" in ln and ln not in said for ln in debug_lines(r.stderr)), \
        debug_lines(r.stderr)  # neither made nor tried
    where = rkt.dir / "cache" / store.STORE
    assert not where.exists() or not list(where.iterdir())
    assert not kh.template_ram_of(rkt.dir)


def test_the_switch(rkt: Rkt, image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = rkt.run("--kvm-template=off", str(image), "--exec", "/bin/true", debug=True)
    assert r.returncode == 0, r.stderr
    assert any("no VM template: off by --kvm-template" in ln for ln in debug_lines(r.stderr))
    r = rkt.run(f"--annotation={templates.ANN_TEMPLATE}=off", str(image), "--exec",
                "/bin/true", debug=True)
    assert any(f"off by annotation {templates.ANN_TEMPLATE}" in ln
               for ln in debug_lines(r.stderr)), r.stderr
    monkeypatch.setenv(templates.ENV_TEMPLATE, "off")
    r = rkt.run(str(image), "--exec", "/bin/true", debug=True)
    assert any(f"off by {templates.ENV_TEMPLATE}" in ln for ln in debug_lines(r.stderr))
    assert not (rkt.dir / "cache" / store.STORE).exists() or not [
        p for p in (rkt.dir / "cache" / store.STORE).iterdir() if p.is_dir()]
    assert not any(restored(p) for p in kh.pod_dirs(rkt.dir))


def test_a_pod_whose_halter_was_killed_still_ends(rkt: Rkt, image: Path) -> None:
    """The guest's halter (rkt-exec --halter, forked before the template was saved)
    ends the VM; killed (here by the app: root, with CAP_KILL, in the guest's one PID
    namespace), the init ends it with busybox's `reboot -f`: the pod still ends, with
    its app's exit code."""
    script = ('for p in /proc/[0-9]*; do read -r c 2>/dev/null <"$p/comm"; '
              '[ "$c" = rkt-exec ] && kill -KILL "${p#/proc/}" && echo killed; done; exit 5')
    r = rkt.run(str(image), "--exec", "/bin/sh", "--", "-c", script)
    assert (r.returncode, r.stdout) == (5, "killed\n"), r.stderr + kh.all_diagnostics(rkt.dir)
    assert_all_restored(rkt.dir)


@pytest.mark.parametrize("when", ["making", "restoring"])
def test_rkt_run_killed_then_gc_leaves_nothing(rkt: Rkt, image: Path, tmp_path: Path,
                                                when: str) -> None:
    if when == "restoring":
        assert rkt.run(str(image), "--exec", "/bin/true").returncode == 0
    p = rkt.start(str(image), "--exec", "/bin/sleep", "--", "600")
    where = rkt.dir / "cache" / store.STORE
    deadline = time.monotonic() + 300
    while True:
        assert p.poll() is None and time.monotonic() < deadline, kh.all_diagnostics(rkt.dir)
        building = list(where.glob(f"{store.BUILD_PREFIX}*/pid")) if where.is_dir() else []
        token = building[0].parent.name[len(store.BUILD_PREFIX):] if building else ""
        if when == "making" and token and kh.qemu_pids_for(token):  # in its RAM file's name
            break
        if when == "restoring" and any(restored(d) for d in kh.pod_dirs(rkt.dir)):
            break
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    g = rkt("gc", "--grace-period=0s")
    assert g.returncode == 0, g.stderr
    assert not kh.pod_dirs(rkt.dir)
    assert not kh.qemu_pids_for(str(rkt.dir))  # a template's QEMU too (its kernel is there)
    assert not [x for x in where.iterdir() if not x.name.endswith(".lock")]
    with open("/proc/self/mountinfo") as f:
        assert str(rkt.dir) not in f.read()


def test_sigterm_while_making_a_template_leaves_no_template_behind(rkt: Rkt,
                                                                   image: Path) -> None:
    p = rkt.start(str(image), "--exec", "/bin/true")
    where = rkt.dir / "cache" / store.STORE
    deadline = time.monotonic() + 300
    while not (where.is_dir() and any(kh.qemu_pids_for(b.name[len(store.BUILD_PREFIX):])
                                      for b in where.glob(f"{store.BUILD_PREFIX}*"))):
        assert p.poll() is None and time.monotonic() < deadline, kh.all_diagnostics(rkt.dir)
        time.sleep(0.01)
    p.terminate()
    _, err = p.communicate(timeout=120)
    assert p.returncode == 254, err
    assert "stopped by SIGTERM while making a VM template" in err
    # Before any `rkt gc`: no template QEMU, no build folder, no RAM file.
    assert not kh.qemu_pids_for(str(rkt.dir))
    assert not [x for x in where.iterdir() if not x.name.endswith(".lock")]
    assert not kh.template_ram_of(rkt.dir)


def test_enter_while_the_template_is_made_waits_for_the_pod(rkt: Rkt, image: Path,
                                                            tmp_path: Path) -> None:
    uuid_file = tmp_path / "uuid"
    p = rkt.start(f"--uuid-file-save={uuid_file}", str(image), "--exec", "/bin/sleep", "--",
                  "600")
    where = rkt.dir / "cache" / store.STORE
    deadline = time.monotonic() + 300
    while not (uuid_file.exists() and where.is_dir()
               and list(where.glob(f"{store.BUILD_PREFIX}*"))):
        assert p.poll() is None and time.monotonic() < deadline, kh.all_diagnostics(rkt.dir)
        time.sleep(0.01)
    # The pod runs, its VM does not yet: `rkt enter` waits for it, as during a boot.
    e = rkt("enter", uuid_file.read_text().strip(), "hostname")
    assert e.returncode == 0, e.stderr + kh.all_diagnostics(rkt.dir)
    assert e.stdout.startswith("rkt-")
    assert rkt("stop", "--force", uuid_file.read_text().strip()).returncode == 0
    p.communicate(timeout=120)
