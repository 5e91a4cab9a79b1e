"""docs/running-kvm-stage1.md, run: every command of the page, read from the page itself.

Each `$ ` line of the page's `sh` blocks is run with bash in a fresh clone of this
repository, in order, and the lines shown under it must appear in its output (stdout and
stderr together): `...` alone stands for any lines; `...text`, `text...` and `...text...`
match a line ending in, starting with or containing text; other lines must be equal. A
command ending in `&` runs in the background; while one does, a failing command is tried
again (the server may still be booting) until it passes or 300 s have gone by; every
background command must have ended by the end of the page.

The page says which four changes the test makes (`adapt`): no `sudo`, a private rkt data
dir, images from the test registry on loopback, a free host port if 6379 is taken.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import kvm_helpers as kh
import pytest

from support.built import REPO, build_env, clone
from support.registry import Registry, free_port, port_is_free

pytestmark = [pytest.mark.qemu, pytest.mark.root, pytest.mark.registry, pytest.mark.cni]
PAGE = REPO / "docs" / "running-kvm-stage1.md"
RETRY_S = 300.0


@dataclass
class Command:
    line: str  # as on the page, without the `$ `
    expected: list[str] = field(default_factory=list)

    @property
    def background(self) -> bool:
        return self.line.endswith("&")


def page_commands(text: str) -> list[Command]:
    commands: list[Command] = []
    in_sh = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_sh = line.strip() == "```sh" and not in_sh
            continue
        if not in_sh:
            continue
        if line.startswith("$ "):
            commands.append(Command(line[2:]))
        elif commands and line.strip():
            commands[-1].expected.append(line.rstrip())
    return commands


def matches(expected: str, line: str) -> bool:
    inner = expected
    head, tail = inner.startswith("..."), inner.endswith("...") and len(inner) > 3
    inner = inner[3 if head else 0 : len(inner) - (3 if tail else 0)]
    if head and tail:
        return inner in line
    if head:
        return line.endswith(inner)
    if tail:
        return line.startswith(inner)
    return line == inner


def missing_lines(expected: list[str], output: str) -> list[str]:
    lines = [ln.rstrip("\r") for ln in output.splitlines()]
    return [e for e in expected if e != "..." and not any(matches(e, ln) for ln in lines)]


def adapt(line: str, data: Path, registry: Registry, port: int) -> str:
    """The page's command as the test runs it (the page lists these changes)."""
    line = line.removesuffix("&").strip()
    line = line.removeprefix("sudo ")
    line = line.replace("build/target/bin/rkt ", f"build/target/bin/rkt --dir={data} ")
    line = re.sub(r"docker://([a-z0-9]+)", rf"docker://{registry.host}/\1", line)
    line = line.replace("--insecure-options=image ", "--insecure-options=image,http ")
    return line.replace("127.0.0.1:6379", f"127.0.0.1:{port}").replace("-p 6379", f"-p {port}")


def test_page_examples_match_the_seed() -> None:
    commands = page_commands(PAGE.read_text())
    assert commands[0].line == (
        "./configure --with-stage1-flavors=kvm --with-stage1-kvm-hypervisors=lkvm,qemu && make"
    )
    assert any(c.line.startswith("sudo build/target/bin/rkt run --debug --insecure-options=image")
               and c.line.endswith("docker://redis &") for c in commands)  # fmt: skip
    assert matches("...vCPU(s), 384 MiB", "stage1: kvm: VM size 2 vCPU(s), 384 MiB")
    assert matches("Default...", "Default stage1 from: x")
    assert matches("...Linux...", "[0.0] Linux version")
    assert not matches("1", "12")


def test_every_command_of_the_page(tmp_path: Path, registry: Registry) -> None:
    tree = clone(tmp_path / "rkt")
    data = tmp_path / "data"
    port = 6379 if port_is_free(6379) else free_port()
    env = build_env()
    background: list[tuple[Command, subprocess.Popen[bytes], Path]] = []
    transcript: list[str] = []
    try:
        for n, cmd in enumerate(page_commands(PAGE.read_text())):
            argv = ["bash", "-c", adapt(cmd.line, data, registry, port)]
            transcript.append(f"$ {argv[2]}")
            if cmd.background:
                log = tmp_path / f"background-{n}.log"
                with log.open("wb") as out:
                    proc = subprocess.Popen(argv, cwd=tree, env=env, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                background.append((cmd, proc, log))
                continue
            deadline = time.monotonic() + (RETRY_S if background else 0)
            while True:
                # a server gone before this try: no point in trying again after it
                gone = all(p.poll() is not None for _, p, _ in background)
                cp = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True,
                                    timeout=600, stdin=subprocess.DEVNULL, check=False)
                output = cp.stdout + cp.stderr
                missing = missing_lines(cmd.expected, output)
                if (cp.returncode == 0 and not missing) or gone or time.monotonic() > deadline:
                    break
                time.sleep(1)
            transcript.append(output)
            assert cp.returncode == 0, "\n".join(transcript) + kh.all_diagnostics(data)
            assert not missing, f"not in the output: {missing}\n" + "\n".join(transcript)
        for cmd, proc, log in background:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail(f"still running after the page's last command: {cmd.line}")
            output = log.read_text(errors="replace")
            missing = missing_lines(cmd.expected, output)
            assert not missing, f"not in the output of {cmd.line}: {missing}\n{output}"
    finally:
        # QEMU first: the pod's own rkt then tears its network down and exits
        kh.kill_and_gc(data, env)
        for _, proc, _ in background:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        kh.kill_and_gc(data, env)
    assert not kh.qemu_pids_for(str(data)), "a QEMU of the page's pods outlived the test"
