"""Small C programs for test images and test fixtures, built with the host's gcc."""

from __future__ import annotations

import subprocess
from pathlib import Path


def static_program(source: str, out: Path) -> Path:
    """out: the C program source compiled as a static executable (no libraries needed
    in a busybox image or a chroot)."""
    c = out.with_name(out.name + ".c")
    c.write_text(source)
    subprocess.run(["gcc", "-O1", "-static", "-o", str(out), str(c)], check=True)
    c.unlink()
    return out
