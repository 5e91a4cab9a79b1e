"""Small rkt functional tests, one behaviour each:

- rkt_exec_test.go: `--exec` overrides the image's (a link, a bare name found in the
  app's PATH: the app sees the path rkt found), also for an image without an app, and
  through `prepare` + `run-prepared`;
- rkt_hostname_test.go: `run-prepared --hostname`, else `rkt-UUID`;
- rkt_status_test.go: `status --uuid-file`;
- rkt_error_output_test.go: an unknown network is stage1's "failed to setup network";
- rkt_env_test.go: the environment an app gets (image, --set-env, --inherit-env,
  --set-env-file, PATH), the same in `rkt enter`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from rktcompat import ImageMaker, Rkt

INSPECT = {"/inspect": '#!/bin/sh\necho "inspect exceed as: $0"\n'}
LINKS = {"/inspect-link": "/inspect", "/bin/inspect-link-bin": "/inspect"}


def exec_image(make_image: ImageMaker, app: bool = True) -> str:
    return str(make_image(name="example.com/rkt-exec-override",
                          app={"exec": ["/inspect"]} if app else None, files=INSPECT,
                          links=LINKS, executable=("/inspect",)))  # fmt: skip


@pytest.mark.parametrize(("flags", "seen"), [
    ([], "/inspect"), (["--exec", "/inspect-link"], "/inspect-link"),
    (["--exec", "inspect-link-bin"], "/bin/inspect-link-bin"),
])  # fmt: skip
def test_run_override_exec(flavor: str, rkt: Rkt, make_image: ImageMaker, flags: list[str],
                           seen: str) -> None:
    image = exec_image(make_image)
    for run in (lambda: rkt.run(image, *flags, "--", "--print-exec"),
                lambda: rkt("--insecure-options=image", "run-prepared", "--net=none",
                            rkt.prepare(image, *flags, "--", "--print-exec").stdout.strip())):
        cp = run()
        assert (cp.returncode, cp.stdout) == (0, f"inspect exceed as: {seen}\n"), cp.stderr


def test_run_override_exec_without_an_app(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    cp = rkt.run(exec_image(make_image, app=False), "--exec", "/inspect")
    assert (cp.returncode, cp.stdout) == (0, "inspect exceed as: /inspect\n"), cp.stderr


def test_hostname(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    image = str(make_image(app={"exec": ["/bin/hostname"]}))
    for hostname in ("test-hostname", ""):
        uuid = rkt.prepare(image).stdout.strip()
        flag = [f"--hostname={hostname}"] if hostname else []
        cp = rkt("--insecure-options=image", "run-prepared", "--net=none", *flag, uuid)
        assert (cp.returncode, cp.stdout) == (0, f"{hostname or 'rkt-' + uuid}\n")


@pytest.mark.root
def test_uuid_file(rkt: Rkt, make_image: ImageMaker, tmp_path: Path) -> None:
    uuid = rkt.prepare(str(make_image(name="example.com/rkt-uuid-file-status-test",
                                      app={"exec": ["/bin/true"]}))).stdout.strip()
    (tmp_path / "uuid-file").write_text(uuid)
    cp = rkt("status", f"--uuid-file={tmp_path / 'uuid-file'}")
    assert cp.returncode == 0 and "state=prepared\n" in cp.stdout


def test_ensure_errors(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    cp = rkt.run(str(make_image(app={"exec": ["/bin/true"]})), net="notavalidnetwork")
    assert cp.returncode == 254
    assert cp.stderr.endswith("stage1: failed to setup network: networks not found: "
                              "notavalidnetwork\n")


ENV_FILE = "# Comment\nVAR_OTHER=file\n; Comment\nVAR_2=2\n"


def test_env(flavor: str, rkt: Rkt, make_image: ImageMaker, tmp_path: Path) -> None:
    """TestEnv's `run` rows: what each app prints of its environment."""
    env_file = tmp_path / "env_file_test.conf"
    env_file.write_text(ENV_FILE)
    image = str(make_image(name="example.com/rkt-inspect", app={
        "exec": ["/bin/sh", "-c", 'echo "$VAR_FROM_MANIFEST|$VAR_OTHER|$TERM|$VAR_2"'],
        "environment": [{"name": "VAR_FROM_MANIFEST", "value": "manifest"},
                        {"name": "PATH", "value": "/bin"}]}))  # fmt: skip
    rows = [  # (flags, host environment, expected line)
        ([], {}, "manifest|||"),
        (["--set-env=VAR_OTHER=setenv"], {}, "manifest|setenv||"),
        (["--set-env=VAR_FROM_MANIFEST=setenv"], {}, "setenv|||"),
        (["--inherit-env=true"], {"VAR_OTHER": "host"}, "manifest|host||"),
        (["--set-env=TERM=dumb"], {}, "manifest||dumb|"),
        (["--inherit-env=true"], {"VAR_FROM_MANIFEST": "host"}, "manifest|||"),
        (["--inherit-env=true", "--set-env=VAR_OTHER=setenv"], {"VAR_OTHER": "host"},
         "manifest|setenv||"),
        (["--set-env=VAR_OTHER=setenv", f"--set-env-file={env_file}"], {},
         "manifest|setenv||2"),
        ([f"--set-env-file={env_file}"], {}, "manifest|file||2"),
    ]  # fmt: skip
    for flags, host, want in rows:
        saved = dict(os.environ)
        os.environ.pop("TERM", None)
        os.environ.update(host)
        try:
            cp = rkt.run(*flags, image)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        assert (cp.returncode, cp.stdout) == (0, want + "\n"), (flags, cp.stderr)
    check_path = str(make_image(name="example.com/check-path", app={
        "exec": ["/bin/sh", "-c", 'echo "$PATH"']}))
    cp = rkt.run(f"--set-env-file={env_file}", check_path)
    assert cp.stdout == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"


def test_env_in_enter(flavor: str, rkt: Rkt, make_image: ImageMaker) -> None:
    """TestEnv's `enter` rows: `rkt enter` sees the app's environment."""
    image = str(make_image(name="example.com/rkt-inspect", app={
        "exec": ["/bin/sh", "-c", "echo ready; sleep 600"],
        "environment": [{"name": "VAR_FROM_MANIFEST", "value": "manifest"}]}))
    child = rkt.start("--set-env=VAR_OTHER=setenv", image)
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    deadline = time.monotonic() + 120
    while "pid=" not in rkt("status", rkt.only_uuid()).stdout:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    cp = rkt("enter", rkt.only_uuid(), "/bin/sh", "-c", 'echo "$VAR_FROM_MANIFEST|$VAR_OTHER"')
    assert (cp.returncode, cp.stdout) == (0, "manifest|setenv\n"), cp.stderr
