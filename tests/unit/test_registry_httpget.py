"""pyrkt.image.httpget against a loopback HTTP server: kept-alive connections, redirects
(Authorization dropped across hosts), bodies cut short, errors, the TLS probe."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pyrkt.image.httpget import Client, TransportError


class Server:
    """Answers GETs by path; records (path, Authorization, client port) of each."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, int]] = []
        self.other = ""  # host:port of a second server (for cross-host redirects)
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                srv.seen.append((self.path, self.headers.get("Authorization"),
                                 self.client_address[1]))  # fmt: skip
                if self.path.startswith("/redirect-here"):
                    self._send(302, b"", {"Location": "/data?x=1"})
                elif self.path.startswith("/redirect-away"):
                    self._send(307, b"moved", {"Location": f"http://{srv.other}/data"})
                elif self.path.startswith("/loop"):
                    self._send(302, b"", {"Location": "/loop"})
                elif self.path.startswith("/cut"):
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.write(b"x" * 400)
                    self.wfile.flush()
                    self.close_connection = True
                else:
                    self._send(200, b"payload:" + self.path.encode(), {})

            def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    a, b = Server(), Server()
    a.other, b.other = b.host, a.host
    yield a, b
    a.stop()
    b.stop()


def test_bodies_params_and_a_kept_alive_connection(servers: tuple[Server, Server]) -> None:
    srv, _ = servers
    client = Client()
    try:
        first = client.get(f"http://{srv.host}/one", params={"scope": "repo:a b"})
        assert (first.status_code, first.content) == (200, b"payload:/one?scope=repo%3Aa+b")
        with client.get(f"http://{srv.host}/two") as second:
            assert b"".join(second.iter_content(3)) == b"payload:/two"
    finally:
        client.close()
    assert len({port for _, _, port in srv.seen}) == 1  # one connection for both


def test_redirects_keep_auth_on_the_same_host_and_drop_it_elsewhere(
    servers: tuple[Server, Server],
) -> None:
    a, b = servers
    client = Client()
    try:
        auth = {"Authorization": "Bearer secret"}
        here = client.get(f"http://{a.host}/redirect-here", headers=auth)
        assert (here.status_code, here.content) == (200, b"payload:/data?x=1")
        away = client.get(f"http://{a.host}/redirect-away", headers=auth)
        assert (away.status_code, away.content) == (200, b"payload:/data")
        with pytest.raises(TransportError, match="redirects"):
            client.get(f"http://{a.host}/loop")
    finally:
        client.close()
    assert ("/data?x=1", "Bearer secret") in [(p, h) for p, h, _ in a.seen]
    assert [(p, h) for p, h, _ in b.seen] == [("/data", None)]


def test_a_body_cut_short_reads_as_an_early_end(servers: tuple[Server, Server]) -> None:
    srv, _ = servers
    client = Client()
    try:
        resp = client.get(f"http://{srv.host}/cut")
        assert resp.headers.get("Content-Length") == "1000"
        assert len(b"".join(resp.iter_content(1 << 20))) == 400
        after = client.get(f"http://{srv.host}/after")  # a new connection, not the dead one
        assert after.content == b"payload:/after"
    finally:
        client.close()


def test_nothing_listening_is_a_transport_error_and_plain_http_is_not_tls(
    servers: tuple[Server, Server],
) -> None:
    srv, _ = servers
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        client = Client()
        with pytest.raises(TransportError) as e:
            client.get(f"http://127.0.0.1:{port}/")
        assert not e.value.tls
    assert client.speaks_tls(srv.host) is False
    with pytest.raises(TransportError) as e:
        client.get(f"https://{srv.host}/")
    assert e.value.tls
    with pytest.raises(TransportError, match="unsupported URL scheme"):
        client.get("ftp://example.com/x")
