"""Fixtures shared by the functional tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyrkt.stage1.kvm.guest.initramfs import build_rkt_exec


@pytest.fixture(scope="module")
def rkt_exec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guest's rkt-exec, built from this tree (static), to run on the host."""
    out = tmp_path_factory.mktemp("rkt-exec") / "rkt-exec"
    build_rkt_exec(out)
    return out
