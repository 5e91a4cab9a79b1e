"""A loopback HTTP proxy in front of a test registry that can cut blob downloads short.

`CuttingProxy(upstream_host)` forwards every GET (headers included) to the upstream
registry; while `.cut_blobs` is true, a `/blobs/` response keeps its full Content-Length
header but sends only half the body, then closes the connection: a truncated download.
With `.rate` set (bytes per second), `/blobs/` bodies are sent that slowly instead (a
download a test can interrupt midway). Blobs smaller than `.min_size` (the image
config) pass whole and at once.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP = {"connection", "transfer-encoding", "keep-alive"}


class CuttingProxy:
    def __init__(self, upstream_host: str) -> None:
        self.upstream = upstream_host
        self.cut_blobs = True
        self.cut_count = 0
        self.min_size = 64 << 10
        self.rate = 0  # bytes per second for big /blobs/ bodies; 0: full speed
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def handle(self) -> None:
                try:
                    super().handle()
                except OSError:  # a client killed midway (a test of exactly that)
                    self.close_connection = True

            def do_GET(self) -> None:
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _HOP | {"host"}}
                req = urllib.request.Request(f"http://{proxy.upstream}{self.path}",
                                             headers=headers)
                try:
                    resp = urllib.request.urlopen(req, timeout=30)
                    code, rh, body = resp.status, resp.headers, resp.read()
                except urllib.error.HTTPError as e:
                    code, rh, body = e.code, e.headers, e.read()
                self.send_response(code)
                for k, v in rh.items():
                    if k.lower() not in _HOP | {"content-length"}:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                cut = (proxy.cut_blobs and "/blobs/" in self.path and code == 200
                       and len(body) >= proxy.min_size)
                if cut:
                    self.send_header("Connection", "close")
                    proxy.cut_count += 1
                    body = body[: len(body) // 2]
                    self.close_connection = True
                self.end_headers()
                slow = (proxy.rate and "/blobs/" in self.path and code == 200
                        and len(body) >= proxy.min_size)
                step = max(1, proxy.rate // 20) if slow else len(body) or 1
                try:
                    for i in range(0, len(body), step):
                        self.wfile.write(body[i : i + step])
                        self.wfile.flush()
                        if slow:
                            time.sleep(0.05)
                except OSError:  # the client went away (killed, or cancelled)
                    self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
