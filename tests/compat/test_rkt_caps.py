"""rkt's tests/rkt_caps_test.go, rkt_caps_nspawn_test.go and rkt_caps_kvm_test.go: the
bounding set an app gets (rkt's 14 default capabilities; an image's retain or remove
set; `--caps-retain`/`--caps-remove`, and the deprecated `--cap-*` spellings, which
replace the image's isolator whatever its kind), one pod with many apps, root and
non-root apps, and `--insecure-options=capabilities` (every capability)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from rktcompat import ImageMaker, Rkt, on

from pyrkt.linux.caps import CAP_NAMES


def machine_keeps(cap: int) -> bool:
    """Whether this machine lets a process keep `cap` (these machines' kernel refuses
    capset(2) with CAP_SYS_RESOURCE even to root: a limit of the machine, not of rkt)."""
    probe = f"from pyrkt.linux import caps; m = 1 << {cap}; caps.capset(caps.CapSets(m, m, m))"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def host_bounding() -> set[str]:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return names(line.split()[1])
    raise AssertionError("no CapBnd")


DEFAULT = {"chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
           "net_bind_service", "net_raw", "sys_chroot", "mknod", "audit_write", "setfcap"}
NSPAWN = ("CAP_CHOWN,CAP_DAC_OVERRIDE,CAP_DAC_READ_SEARCH,CAP_FOWNER,CAP_FSETID,"
          "CAP_IPC_OWNER,CAP_KILL,CAP_LEASE,CAP_LINUX_IMMUTABLE,CAP_NET_BIND_SERVICE,"
          "CAP_NET_BROADCAST,CAP_NET_RAW,CAP_SETGID,CAP_SETFCAP,CAP_SETPCAP,CAP_SETUID,"
          "CAP_SYS_ADMIN,CAP_SYS_CHROOT,CAP_SYS_NICE,CAP_SYS_PTRACE,CAP_SYS_TTY_CONFIG,"
          "CAP_SYS_RESOURCE,CAP_SYS_BOOT,CAP_AUDIT_WRITE,CAP_AUDIT_CONTROL")
if not machine_keeps(24):  # CAP_SYS_RESOURCE
    NSPAWN = NSPAWN.replace("CAP_SYS_RESOURCE,", "")
ALL_DEFAULT = ",".join(f"CAP_{c.upper()}" for c in sorted(DEFAULT))

# (name, retain set, remove set, expected bounding set, deprecated flag spelling)
CASES = [
    ("image-none", None, None, DEFAULT, False),
    ("image-only-one-cap", "CAP_NET_ADMIN", None, {"net_admin"}, False),
    ("image-only-one-cap-old", "CAP_NET_ADMIN", None, {"net_admin"}, True),
    ("image-only-one-cap-from-default", "CAP_CHOWN", None, {"chown"}, False),
    ("image-some-caps", "CAP_CHOWN,CAP_FOWNER,CAP_SYS_ADMIN,CAP_NET_ADMIN", None,
     {"chown", "fowner", "net_admin", "sys_admin"}, False),
    ("image-caps-from-nspawn-default", NSPAWN, None,
     {c[4:].lower() for c in NSPAWN.split(",")}, False),
    ("image-remove-one-from-default", None, "CAP_CHOWN", DEFAULT - {"chown"}, False),
    ("image-remove-one-from-default-old", None, "CAP_CHOWN", DEFAULT - {"chown"}, True),
    ("image-remove-one-already-removed", None, "CAP_SYS_ADMIN", DEFAULT, False),
    ("image-remove-two", None, "CAP_CHOWN,CAP_SYS_ADMIN", DEFAULT - {"chown"}, False),
    ("image-remove-all", None, ALL_DEFAULT, set(), False),
]  # fmt: skip


def names(mask_hex: str) -> set[str]:
    mask = int(mask_hex, 16)
    return {CAP_NAMES[i][4:].lower() for i in range(len(CAP_NAMES)) if mask >> i & 1}


def isolators(retain: str | None, remove: str | None) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    if retain is not None:
        out.append({"name": "os/linux/capabilities-retain-set",
                    "value": {"set": retain.split(",")}})
    if remove is not None:
        out.append({"name": "os/linux/capabilities-remove-set",
                    "value": {"set": remove.split(",")}})
    return out


def print_caps(name: str, field: str = "CapBnd") -> list[str]:
    return ["/bin/sh", "-c", f'echo "{name} $(grep {field} /proc/self/status | cut -f2)"']


def outputs(stdout: str) -> dict[str, set[str]]:
    return {ln.split()[0]: names(ln.split()[1]) for ln in stdout.splitlines()}


@pytest.mark.parametrize(("flavor", "how"), [
    on("coreos", "patches"), on("coreos", "flags"), on("kvm", "patches"), on("kvm", "flags"),
])  # fmt: skip
def test_caps_several_apps(flavor: str, rkt: Rkt, make_image: ImageMaker, how: str) -> None:
    """TestCapsSeveralAppWithPatches / WithFlags: all the cases in one pod."""
    args: list[str] = []
    for name, retain, remove, _, old in CASES:
        app = {"exec": print_caps(name)}
        if how == "patches":
            app["isolators"] = isolators(retain, remove)
        args.append(str(make_image(name=f"example.com/{name}", app=app)))
        if how == "flags":
            prefix = "--cap-" if old else "--caps-"
            args += [f"{prefix}retain={retain}"] if retain else []
            args += [f"{prefix}remove={remove}"] if remove else []
    cp = rkt.run(*args)
    assert cp.returncode == 0, cp.stderr
    assert outputs(cp.stdout) == {name: want for name, _, _, want, _ in CASES}
    if how == "flags":
        assert "Flag --cap-retain has been deprecated, use --caps-retain instead" in cp.stderr


OVERRIDE = [  # (name, image retain, image remove, flag retain, flag remove, expected)
    ("retain-override-retain", "CAP_MKNOD", None, "CAP_SYS_ADMIN", None, {"sys_admin"}),
    ("retain-override-remove", None, "CAP_CHOWN", "CAP_SYS_ADMIN", None, {"sys_admin"}),
    ("remove-override-remove", None, "CAP_CHOWN", None, "CAP_KILL", DEFAULT - {"kill"}),
    ("remove-override-retain", "CAP_MKNOD", None, None, "CAP_KILL", DEFAULT - {"kill"}),
]  # fmt: skip


def test_caps_override(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    """TestCapsOverride (with rkt's deprecated --cap-* flags, as rkt's test used them)."""
    args: list[str] = []
    for name, i_ret, i_rem, f_ret, f_rem, _ in OVERRIDE:
        app = {"exec": print_caps(name), "isolators": isolators(i_ret, i_rem)}
        args.append(str(make_image(name=f"example.com/{name}", app=app)))
        args += [f"--cap-retain={f_ret}"] if f_ret else [f"--cap-remove={f_rem}"]
    cp = rkt.run(*args)
    assert cp.returncode == 0, cp.stderr
    assert outputs(cp.stdout) == {c[0]: c[5] for c in OVERRIDE}


@pytest.mark.root
def test_caps_retain_and_remove_on_one_image(rkt: Rkt) -> None:
    cp = rkt("run", "--net=none", "x.aci", "--caps-retain=CAP_KILL", "--caps-remove=CAP_KILL")
    assert (cp.returncode, cp.stderr) == (
        254, "run: error: cannot use both --caps-retain and --caps-remove on the same image\n")


@pytest.mark.parametrize("flavor", [
    on("coreos"), on("kvm")])
def test_caps_insecure_option(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    image = str(make_image(app={"exec": print_caps("app")}))
    # every capability this machine has; in a VM, every one of the guest's own kernel
    # (6.1: 41), which this host's refusals (CAP_SYS_RESOURCE, see machine_keeps) miss
    everything = names(f"{(1 << len(CAP_NAMES)) - 1:x}") if flavor == "kvm" else host_bounding()
    for insecure, want in (("image", DEFAULT), ("image,ondisk,paths", DEFAULT),
                           ("all-fetch", DEFAULT), ("image,capabilities", everything),
                           ("all", everything)):  # fmt: skip
        cp = rkt(f"--insecure-options={insecure}", "run", rkt.stage1_flag(), "--net=none",
                 image)
        assert outputs(cp.stdout) == {"app": want}, insecure


CAPS = [  # (isolator, capability, expected in a root app and in a non-root one)
    ("", "net_admin", False), ("", "mknod", True),
    ("CAP_NET_ADMIN,CAP_NET_BIND_SERVICE", "net_admin", True),
    ("CAP_NET_ADMIN,CAP_NET_BIND_SERVICE", "net_bind_service", True),
    ("CAP_NET_BIND_SERVICE", "net_admin", False),
]  # fmt: skip


@pytest.mark.parametrize("user", ["0", "9000"])
def test_caps(flavor: str, rkt: Rkt, make_image: ImageMaker, user: str) -> None:
    """TestCaps (stage2) and TestCapsNonRoot: the effective set of a root app and of an
    app running as user 9000 (rkt gave it the retained capabilities as ambient ones)."""
    args: list[str] = []
    for i, (iso, _, _) in enumerate(CAPS):
        app = {"exec": print_caps(f"case{i}", "CapEff"), "user": user, "group": user,
               "isolators": isolators(iso or None, None)}
        args.append(str(make_image(name=f"example.com/case{i}", app=app)))
    cp = rkt.run(*args)
    assert cp.returncode == 0, cp.stderr
    got = outputs(cp.stdout)
    assert {f"case{i}": cap in got[f"case{i}"] for i, (_, cap, _) in enumerate(CAPS)} == \
        {f"case{i}": want for i, (_, _, want) in enumerate(CAPS)}
