"""Processes the VM tests look for on the host."""

from __future__ import annotations

from pathlib import Path


def qemu_pids(text: str) -> list[int]:
    """Live (not zombie) QEMU processes whose command line mentions text (a pod uuid,
    a pod folder, a runtime root)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if "qemu-system" in cmd and text in cmd and state != "Z":
            out.append(int(d.name))
    return out
