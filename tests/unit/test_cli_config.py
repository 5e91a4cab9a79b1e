"""`rkt config` prints what the config dirs say, local overriding system."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def rkt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyrkt", *args], capture_output=True,
                          text=True, check=False)


def write(p: Path, data: object) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data))


def test_config_merges_system_and_local(tmp_path: Path) -> None:
    system, local = tmp_path / "sys", tmp_path / "local"
    write(system / "auth.d" / "a.json", {"rktKind": "dockerAuth", "rktVersion": "v1",
          "registries": ["r.example"], "credentials": {"user": "old", "password": "x"}})
    write(local / "auth.d" / "b.json", {"rktKind": "dockerAuth", "rktVersion": "v1",
          "registries": ["r.example"], "credentials": {"user": "new", "password": "y"}})
    write(system / "stage1.d" / "s.json", {"rktKind": "stage1", "rktVersion": "v1",
          "name": "example.com/old", "version": "1", "location": "/opt/s1.aci"})
    write(local / "stage1.d" / "s.json", {"rktKind": "stage1", "rktVersion": "v1",
          "name": "coreos.com/rkt/stage1-kvm", "version": "0.1.0-qemu"})
    cp = rkt(f"--system-config={system}", f"--local-config={local}",
             f"--dir={tmp_path / 'data'}", "--user-config=" + str(tmp_path / "none"), "config")
    assert cp.returncode == 0, cp.stderr
    entries = json.loads(cp.stdout)["stage0"]
    kinds = [e["rktKind"] for e in entries]
    assert kinds == ["dockerAuth", "paths", "stage1"]
    assert entries[0]["credentials"]["user"] == "new"
    assert entries[1]["data"] == str(tmp_path / "data")
    # rkt's override semantics: the name and version as a pair, the location apart
    assert (entries[2]["name"], entries[2]["version"], entries[2]["location"]) == (
        "coreos.com/rkt/stage1-kvm", "0.1.0-qemu", "/opt/s1.aci")


def test_stage1_config_name_needs_its_version(tmp_path: Path) -> None:
    local = tmp_path / "local"
    bad = local / "stage1.d" / "s.json"
    write(bad, {"rktKind": "stage1", "rktVersion": "v1", "name": "coreos.com/rkt/stage1-kvm"})
    cp = rkt(f"--local-config={local}", "config")
    assert cp.returncode == 254
    assert str(bad) in cp.stderr and "version is missing" in cp.stderr
    # `rkt version` still answers, saying what is wrong
    version = rkt(f"--local-config={local}", "version")
    assert version.returncode == 0
    assert "Default stage1 image: unknown: invalid configuration file" in version.stdout
    write(bad, {"rktKind": "stage1", "rktVersion": "v1", "location": "stage1.aci"})
    cp = rkt(f"--local-config={local}", "config")
    assert cp.returncode == 254 and "neither an absolute path nor" in cp.stderr


def test_config_rejects_a_broken_file(tmp_path: Path) -> None:
    bad = tmp_path / "local" / "paths.d" / "x.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{nope")
    cp = rkt(f"--local-config={tmp_path / 'local'}", "config")
    assert cp.returncode == 254
    assert str(bad) in cp.stderr and "Traceback" not in cp.stderr
