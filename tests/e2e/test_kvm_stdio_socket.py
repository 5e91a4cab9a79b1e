"""`rkt run` of a VM pod whose stdout and stderr are sockets (as under a service manager
that hands its journal a stream socket): the apps' output still arrives, separately."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import kvm_helpers as kh
import pytest

pytestmark = [pytest.mark.qemu, pytest.mark.root]

TIMEOUT = 300


def _drain(sock: socket.socket, into: list[bytes]) -> None:
    while chunk := sock.recv(65536):
        into.append(chunk)


def test_app_output_reaches_socket_stdout_and_stderr(tmp_path: Path) -> None:
    from pyrkt.stage1.build.aci import Flavor, Hypervisor, build_stage1_aci
    from pyrkt.stage1.kvm import accel

    stage1 = build_stage1_aci(Flavor.KVM, tmp_path / "s1", Hypervisor.QEMU)
    image = kh.busybox_aci(tmp_path / "aci")
    d = tmp_path / "rkt"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           accel.ENV_FORCE: os.environ.get(accel.ENV_FORCE, "tcg")}
    out_ours, out_theirs = socket.socketpair()
    err_ours, err_theirs = socket.socketpair()
    got_out: list[bytes] = []
    got_err: list[bytes] = []
    readers = [threading.Thread(target=_drain, args=(out_ours, got_out)),
               threading.Thread(target=_drain, args=(err_ours, got_err))]
    for t in readers:
        t.start()
    try:
        with out_theirs, err_theirs:
            p = subprocess.Popen(
                [sys.executable, "-m", "pyrkt", f"--dir={d}", "run",
                 "--insecure-options=image", "--net=none", f"--stage1-path={stage1}",
                 str(image), "--exec", "/bin/sh", "--", "-c",
                 "echo to-stdout; echo to-stderr >&2; exit 6"],
                stdin=subprocess.DEVNULL, stdout=out_theirs.fileno(),
                stderr=err_theirs.fileno(), env=env)
        rc = p.wait(timeout=TIMEOUT)
        for t in readers:  # EOF once every writer (rkt and its helpers) is done
            t.join(timeout=TIMEOUT)
        out = b"".join(got_out).decode(errors="replace")
        err = b"".join(got_err).decode(errors="replace")
        assert rc == 6, err + kh.all_diagnostics(d)
        assert out == "to-stdout\n", err + kh.all_diagnostics(d)
        assert "to-stderr\n" in err
        assert "to-stdout" not in err
    finally:
        for s in (out_ours, err_ours):
            s.shutdown(socket.SHUT_RDWR)
        for t in readers:
            t.join(timeout=TIMEOUT)
        out_ours.close()
        err_ours.close()
        kh.kill_and_gc(d, env, TIMEOUT)
