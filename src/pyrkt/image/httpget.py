"""HTTP(S) GETs on the standard library's `http.client`: what fetching images needs, and
nothing more (importing `requests` cost `rkt fetch` about 0.1-0.2 s of CPU per run).

    client = Client(verify=True)          # one per thread: it keeps its connections
    resp = client.get("https://host/v2/", headers={...}, params={...})
    resp.status_code, resp.reason, resp.headers.get("Www-Authenticate")
    resp.content / resp.json() / resp.read(n) / resp.iter_content(n); resp.close()

Connections are kept alive per (scheme, host) and reused once a response has been read to
its end; a kept connection the server has meanwhile closed is replaced, once, for the
same GET. Redirects (301, 302, 303, 307, 308; at most 10) are followed, dropping the
`Authorization` header when the host changes (as `requests` did: blob downloads are often
redirected to a storage service). `https_proxy` / `http_proxy` / `no_proxy` from the
environment are honoured (CONNECT tunnels for https). Certificates are checked against
the system's CAs, or the bundle `SSL_CERT_FILE` (or `REQUESTS_CA_BUNDLE`) names. A body
cut short is seen by the caller as an early end (fewer bytes than `Content-Length`):
check the size.

Failures to connect, TLS failures and protocol errors raise `TransportError` (`.tls` tells
TLS failures apart), never a bare `OSError`.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin, urlsplit

if TYPE_CHECKING:
    import ssl

TIMEOUT = 60.0  # seconds: connect, and each read
MAX_REDIRECTS = 10
USER_AGENT = "pyrkt (rkt-compatible)"
_REDIRECTS = {301, 302, 303, 307, 308}


class TransportError(Exception):
    """A GET that got no HTTP response: connection, TLS or protocol failure."""

    def __init__(self, message: str, *, tls: bool = False) -> None:
        super().__init__(message)
        self.tls = tls


class Response:
    """One HTTP response; read its body (or close it) before the next GET."""

    def __init__(self, raw: http.client.HTTPResponse, url: str, release: Any) -> None:
        self._raw = raw
        self._release = release
        self.url = url
        self.status_code = raw.status
        self.reason = raw.reason
        self.headers = raw.headers
        self._content: bytes | None = None

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._raw.read(None if n < 0 else n)
        except (OSError, http.client.HTTPException) as e:
            self._drop()
            raise TransportError(f"reading {self.url}: {_describe(e)}") from e
        if n < 0 or not data:
            self.close()
        return data

    def iter_content(self, n: int) -> Iterator[bytes]:
        while chunk := self.read(n):
            yield chunk

    @property
    def content(self) -> bytes:
        if self._content is None:
            self._content = self.read()
        return self._content

    def json(self) -> Any:
        return json.loads(self.content)

    def _drop(self) -> None:
        if self._release is not None:
            self._release(reuse=False)
            self._release = None

    def close(self) -> None:
        """Done with this response: its connection is kept only if the body was read
        to its end (else the rest would be the next response's start)."""
        if self._release is not None:
            raw = self._raw
            self._release(reuse=raw.isclosed() and not raw.will_close and not raw.length)
            self._release = None

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _describe(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _proxy_for(scheme: str, host: str) -> str | None:
    """The proxy URL the environment names for scheme://host, as curl and Go do."""
    env = os.environ
    no_proxy = env.get("no_proxy", env.get("NO_PROXY", ""))
    name = host.rsplit(":", 1)[0].strip("[]").lower()
    for entry in (x.strip().lower() for x in no_proxy.split(",")):
        if entry == "*" or (entry and (name == entry.lstrip(".") or
                                       name.endswith("." + entry.lstrip(".")))):  # fmt: skip
            return None
    key = f"{scheme}_proxy"
    value = env.get(key) or env.get(key.upper())
    return value or None


class Client:
    """GETs over kept-alive connections; not thread-safe (one per thread)."""

    def __init__(self, *, verify: bool = True, timeout: float = TIMEOUT) -> None:
        self.verify = verify
        self.timeout = timeout
        self._conns: dict[tuple[str, str], http.client.HTTPConnection] = {}
        self._busy: set[int] = set()  # id() of connections whose response is unreleased
        self._ctx: ssl.SSLContext | None = None

    def _context(self) -> ssl.SSLContext:
        if self._ctx is None:
            import ssl

            if self.verify:
                # the system's CAs, or the bundle SSL_CERT_FILE (OpenSSL's variable) or
                # REQUESTS_CA_BUNDLE (what pyrkt honoured when it used requests) names
                env = os.environ
                cafile = env.get("SSL_CERT_FILE") or env.get("REQUESTS_CA_BUNDLE") or None
                self._ctx = ssl.create_default_context(cafile=cafile)
            else:
                self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                self._ctx.check_hostname = False
                self._ctx.verify_mode = ssl.CERT_NONE
        return self._ctx

    def speaks_tls(self, host: str) -> bool:
        """Whether host (HOST[:PORT], 443 by default) completes a TLS handshake; no
        certificate checks (so no CA bundle to load): just which protocol is spoken."""
        import ssl

        if _proxy_for("https", host):
            return True  # the proxy decides; let the real GET find out
        parts = urlsplit(f"//{host}")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            addr = (parts.hostname or host, parts.port or 443)
            with socket.create_connection(addr, timeout=self.timeout) as sock, \
                    ctx.wrap_socket(sock, server_hostname=parts.hostname):
                return True
        except ssl.SSLError:
            return False
        except OSError:
            return True  # not a TLS answer, but no answer at all: the GET will tell

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        key = (scheme, netloc)
        conn = self._conns.get(key)
        if conn is not None and id(conn) in self._busy:
            # a response on it was never released: leave that connection to it
            del self._conns[key]
            conn = None
        if conn is None:
            proxy = _proxy_for(scheme, netloc)
            if scheme == "https":
                if proxy:
                    p = urlsplit(proxy)
                    conn = http.client.HTTPSConnection(p.hostname or "", p.port or 80,
                                                       timeout=self.timeout,
                                                       context=self._context())  # fmt: skip
                    conn.set_tunnel(netloc)
                else:
                    conn = http.client.HTTPSConnection(netloc, timeout=self.timeout,
                                                       context=self._context())  # fmt: skip
            else:
                target = urlsplit(proxy).netloc if proxy else netloc
                conn = http.client.HTTPConnection(target, timeout=self.timeout)
            self._conns[key] = conn
        return conn

    def _forget(self, key: tuple[str, str]) -> None:
        conn = self._conns.pop(key, None)
        if conn is not None:
            conn.close()

    def _once(self, url: str, headers: Mapping[str, str]) -> Response:
        import ssl

        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise TransportError(f"{url}: unsupported URL scheme {scheme!r}")
        key = (scheme, parts.netloc)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        if scheme == "http" and _proxy_for("http", parts.netloc):
            path = url  # a plain-http proxy takes the absolute URL
        hdrs = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers}
        for attempt in (1, 2):
            fresh = key not in self._conns or id(self._conns[key]) in self._busy
            conn = self._connection(scheme, parts.netloc)
            try:
                conn.request("GET", path, headers=hdrs)
                raw = conn.getresponse()
            except ssl.SSLError as e:
                self._forget(key)
                raise TransportError(f"{url}: {_describe(e)}", tls=True) from e
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError) as e:  # fmt: skip
                self._forget(key)
                if attempt == 1 and not fresh:
                    continue  # the kept connection had been closed by the server
                raise TransportError(f"{url}: {_describe(e)}") from e
            except (OSError, http.client.HTTPException) as e:
                self._forget(key)
                raise TransportError(f"{url}: {_describe(e)}") from e

            self._busy.add(id(conn))

            def release(*, reuse: bool, key: tuple[str, str] = key,
                        conn: http.client.HTTPConnection = conn) -> None:  # fmt: skip
                self._busy.discard(id(conn))
                pooled = self._conns.get(key) is conn
                if not reuse or not pooled:
                    if pooled:
                        del self._conns[key]
                    conn.close()

            return Response(raw, url, release)
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, url: str, *, headers: Mapping[str, str] | None = None,
            params: Mapping[str, str] | None = None) -> Response:  # fmt: skip
        """GET url (+ params), following redirects; the caller closes the response."""
        if params:
            url += ("&" if urlsplit(url).query else "?") + urlencode(params)
        hdrs = dict(headers or {})
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._once(url, hdrs)
            location = resp.headers.get("Location")
            if resp.status_code not in _REDIRECTS or not location:
                return resp
            if _drain(resp):
                resp.close()
            else:
                resp._drop()
            target = urljoin(url, location)
            if urlsplit(target).netloc != urlsplit(url).netloc:
                hdrs = {k: v for k, v in hdrs.items() if k.lower() != "authorization"}
            url = target
        raise TransportError(f"{url}: more than {MAX_REDIRECTS} redirects")

    def close(self) -> None:
        for key in list(self._conns):
            self._forget(key)


def _drain(resp: Response, limit: int = 64 << 10) -> bool:
    """Read a small body to its end (so the connection can be reused); False if big."""
    length = resp.headers.get("Content-Length")
    if length is None or not length.isdigit() or int(length) > limit:
        return False
    try:
        resp.read()
    except TransportError:
        return False
    return True
