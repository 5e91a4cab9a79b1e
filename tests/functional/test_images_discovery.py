"""`rkt fetch NAME` and `rkt trust --prefix=NAME` through appc meta discovery, against a
real HTTPS server on 127.0.0.1:443 (the discovery URL `https://localhost/...` has no
port) with a self-signed certificate for `localhost`, trusted through SSL_CERT_FILE.
Ports 443 and 80 are used by no other test."""

from __future__ import annotations

import http.server
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_images_cli import gpg, gpg_home, make_aci

pytestmark = pytest.mark.root
__all__ = ["gpg_home"]  # the fixture, re-exported for pytest

PAGE = """<!DOCTYPE html><html><head>
<meta name="ac-discovery" content="localhost/app {base}/images/{{name}}-{{version}}-{{os}}-{{arch}}.{{ext}}">
<meta name="ac-discovery" content="localhost/app {base}/latest/{{os}}/{{arch}}/{{name}}.{{ext}}">
<meta name="ac-discovery-pubkeys" content="localhost/app {base}/pubkeys.gpg">
</head></html>"""  # noqa: E501
ROOT_PAGE = """<meta name="ac-discovery" content="localhost/tools {base}/tools/{{version}}/{{name}}.{{ext}}">"""  # noqa: E501


@dataclass
class Site:
    """What the server serves (path -> body) and the paths it was asked for."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


def _serve(site: Site, port: int, ctx: ssl.SSLContext | None) -> http.server.HTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            site.requests.append(self.path)
            body = site.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    if ctx is not None:
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def cert(tmp_path: Path) -> Path:
    """A self-signed certificate (and key, same file) for localhost and 127.0.0.1."""
    pem = tmp_path / "localhost.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(pem), "-out", str(pem)],
        check=True, capture_output=True,
    )  # fmt: skip
    return pem


def _site(tmp_path: Path, gpg_home: Path, base: str) -> Site:
    """The discovery pages, localhost/app:1.0 signed, and the signing public key."""
    aci = make_aci(tmp_path / "app.aci", name="localhost/app", version="1.0")
    gpg(gpg_home, "--armor", "--detach-sign", "--output", f"{aci}.asc", str(aci))
    key = tmp_path / "pubkey.gpg"
    gpg(gpg_home, "--armor", "--output", str(key), "--export")
    tool = make_aci(tmp_path / "hello.aci", name="localhost/tools/hello", version="2")
    return Site({
        "/app?ac-discovery=1": PAGE.format(base=base).encode(),
        "/?ac-discovery=1": ROOT_PAGE.format(base=base).encode(),
        "/images/localhost/app-1.0-linux-amd64.aci": aci.read_bytes(),
        "/images/localhost/app-1.0-linux-amd64.aci.asc": Path(f"{aci}.asc").read_bytes(),
        "/latest/linux/amd64/localhost/app.aci": aci.read_bytes(),
        "/pubkeys.gpg": key.read_bytes(),
        "/tools/2/localhost/tools/hello.aci": tool.read_bytes(),
    })  # fmt: skip


@pytest.fixture
def https_site(tmp_path: Path, gpg_home: Path, cert: Path) -> Iterator[Site]:
    site = _site(tmp_path, gpg_home, "https://localhost")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert)
    server = _serve(site, 443, ctx)
    yield site
    server.shutdown()
    server.server_close()


def rkt(tmp_path: Path, cert: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "etc"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    if cert is not None:
        env["SSL_CERT_FILE"] = str(cert)
    return subprocess.run(
        [sys.executable, "-m", "pyrkt", f"--dir={tmp_path / 'data'}",
         f"--local-config={cfg}", f"--system-config={cfg}/sys", *args],
        capture_output=True, text=True, check=False, env=env, stdin=subprocess.DEVNULL,
        timeout=120,
    )  # fmt: skip


def test_trust_by_discovery_then_fetch_by_name(
    tmp_path: Path, https_site: Site, cert: Path
) -> None:
    untrusted = rkt(tmp_path, cert, "fetch", "localhost/app:1.0")
    assert untrusted.returncode == 254
    assert "not trusted for 'localhost/app'" in untrusted.stderr

    trust = rkt(tmp_path, cert, "trust", "--prefix=localhost/app", "--skip-fingerprint-review")
    assert trust.returncode == 0, trust.stderr
    assert 'Key: "https://localhost/pubkeys.gpg"' in trust.stdout
    assert "GPG key fingerprint is:" in trust.stdout
    assert 'Added key for prefix "localhost/app"' in trust.stdout

    fetched = rkt(tmp_path, cert, "fetch", "--full", "localhost/app:1.0")
    assert fetched.returncode == 0, fetched.stderr
    image_id = fetched.stdout.strip()
    assert image_id.startswith("sha512-") and len(image_id) == 7 + 64
    listed = rkt(tmp_path, cert, "image", "list", "--no-legend", "--full")
    assert listed.returncode == 0, listed.stderr
    assert image_id in listed.stdout and "localhost/app:1.0" in listed.stdout

    # --pull-policy=new (the default): the store has localhost/app:1.0, no network
    asked = len(https_site.requests)
    again = rkt(tmp_path, cert, "fetch", "--full", "localhost/app:1.0")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == image_id
    assert len(https_site.requests) == asked


def test_trust_by_discovery_asks_for_confirmation(
    tmp_path: Path, https_site: Site, cert: Path
) -> None:
    refused = rkt(tmp_path, cert, "trust", "--prefix=localhost/app")  # stdin: empty
    assert refused.returncode == 0, refused.stderr
    assert "Are you sure you want to trust this key (yes/no)?" in refused.stdout
    assert 'Not trusting "https://localhost/pubkeys.gpg"' in refused.stdout
    assert not (tmp_path / "etc" / "trustedkeys").exists()


def test_discovery_walks_up_the_name(tmp_path: Path, https_site: Site, cert: Path) -> None:
    cp = rkt(tmp_path, cert, "--insecure-options=image", "fetch", "localhost/tools/hello:2")
    assert cp.returncode == 0, cp.stderr
    assert https_site.requests[:3] == [
        "/tools/hello?ac-discovery=1", "/tools?ac-discovery=1", "/?ac-discovery=1"
    ]  # fmt: skip
    listed = rkt(tmp_path, cert, "image", "list", "--no-legend")
    assert "localhost/tools/hello:2" in listed.stdout


def test_no_version_takes_the_latest_template(
    tmp_path: Path, https_site: Site, cert: Path
) -> None:
    cp = rkt(tmp_path, cert, "--insecure-options=image", "fetch", "localhost/app")
    assert cp.returncode == 0, cp.stderr
    assert "/latest/linux/amd64/localhost/app.aci" in https_site.requests
    listed = rkt(tmp_path, cert, "image", "list", "--no-legend")
    assert "localhost/app:1.0" in listed.stdout


def test_name_without_discovery_page_names_the_urls_tried(
    tmp_path: Path, https_site: Site, cert: Path
) -> None:
    del https_site.files["/?ac-discovery=1"]
    cp = rkt(tmp_path, cert, "fetch", "localhost/nothing:1.0")
    assert cp.returncode == 254
    assert "discovery failed" in cp.stderr
    assert "https://localhost/nothing?ac-discovery=1" in cp.stderr
    never = rkt(tmp_path, cert, "fetch", "--pull-policy=never", "localhost/app:1.0")
    assert never.returncode == 254 and "not in the store" in never.stderr


def test_untrusted_certificate_fails_discovery(tmp_path: Path, https_site: Site) -> None:
    cp = rkt(tmp_path, None, "--insecure-options=image", "fetch", "localhost/app:1.0")
    assert cp.returncode == 254
    assert "https://localhost/app?ac-discovery=1" in cp.stderr
    assert "certificate" in cp.stderr


def test_discovery_over_plain_http_needs_insecure_options(
    tmp_path: Path, gpg_home: Path
) -> None:
    site = _site(tmp_path, gpg_home, "http://localhost")
    server = _serve(site, 80, None)
    try:
        refused = rkt(tmp_path, None, "--insecure-options=image", "fetch", "localhost/app:1.0")
        assert refused.returncode == 254
        assert "--insecure-options=http" in refused.stderr
        assert site.requests == []
        ok = rkt(tmp_path, None, "--insecure-options=image,http", "fetch", "localhost/app:1.0")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip().startswith("sha512-")
    finally:
        server.shutdown()
        server.server_close()


def test_run_by_name_discovers_the_image(tmp_path: Path, https_site: Site, cert: Path) -> None:
    trust = rkt(tmp_path, cert, "trust", "--prefix=localhost/app", "--skip-fingerprint-review")
    assert trust.returncode == 0, trust.stderr
    try:
        cp = rkt(tmp_path, cert, "run", "--net=host", "localhost/app:1.0")
        assert cp.returncode == 0, cp.stderr
        assert "hello" in cp.stdout
        assert "/images/localhost/app-1.0-linux-amd64.aci" in https_site.requests
    finally:
        rkt(tmp_path, cert, "gc", "--grace-period=0s")
