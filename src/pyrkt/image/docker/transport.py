"""HTTP to one registry: scheme choice, the auth handshake, and error mapping.

`RegistrySession(ref.registry, repo, ...)` pings `/v2/` once. On a 401 it reads the
`WWW-Authenticate` challenge: `Basic` -> credentials sent as basic auth; `Bearer` ->
`GET realm?service=S&scope=repository:REPO:pull` (with basic credentials when there are
some), and the token is sent as `Authorization: Bearer`. A later 401 fetches a fresh
token once. `https` always, unless `insecure_http`, where https is tried first and plain
http used when the server does not speak TLS (found by a handshake that needs no CA
bundle). HTTP is `pyrkt.image.httpget` (the standard library's http.client: `requests`
cost every `rkt fetch` 0.1-0.2 s of CPU to import); each thread gets its own client and
keeps its connections.
"""

from __future__ import annotations

import threading
from typing import Any

from pyrkt import log
from pyrkt.errors import NotFound, RktError
from pyrkt.image.docker.auth import Challenge, Credentials, parse_challenge
from pyrkt.image.httpget import Client, Response, TransportError


class RegistryError(RktError):
    """The registry refused or failed a request."""


class AuthError(RegistryError):
    """Credentials missing or refused."""


def _error_detail(resp: Response) -> str:
    try:
        errors = resp.json().get("errors") or []
        first = errors[0]
        return f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except (ValueError, AttributeError, IndexError, TypeError):
        return resp.reason or ""


class RegistrySession:
    def __init__(self, host: str, repository: str, *, insecure_http: bool = False,
                 insecure_tls: bool = False, credentials: Credentials | None = None) -> None:
        self.host = host
        self.repository = repository
        self.insecure_http = insecure_http
        self.verify = not insecure_tls
        self.credentials = credentials
        self.base = ""
        self._auth_header: str | None = None
        self._challenge: Challenge | None = None
        self._local = threading.local()
        self._lock = threading.Lock()

    # -- plumbing

    def _session(self) -> Client:
        s: Client | None = getattr(self._local, "session", None)
        if s is None:
            s = Client(verify=self.verify)
            self._local.session = s
        return s

    def _raw_get(self, url: str, **kw: Any) -> Response:
        log.debug(f"GET {url}")
        try:
            return self._session().get(url, **kw)
        except TransportError as e:
            if e.tls:
                raise RegistryError(f"TLS error talking to registry {self.host}: {e}",
                                    "--insecure-options=tls skips verification") from e
            raise RegistryError(f"cannot reach registry {self.host}: {e}") from e

    def ping(self) -> None:
        """Pick the scheme and set up authentication (once)."""
        if self.base:
            return
        schemes = ["https", "http"] if self.insecure_http else ["https"]
        resp: Response | None = None
        for scheme in schemes:
            url = f"{scheme}://{self.host}/v2/"
            if scheme != schemes[-1] and not self._session().speaks_tls(self.host):
                log.debug(f"{self.host} does not speak TLS: trying http")
                continue
            try:
                resp = self._session().get(url)
            except TransportError as e:
                log.debug(f"{url}: {e}")
                if scheme != schemes[-1]:
                    continue
                if not e.tls:
                    hint = None if self.insecure_http else \
                        "a plain-http registry needs --insecure-options=http"
                    raise RegistryError(f"cannot reach registry {self.host}: {e}", hint) \
                        from e
                if "certificate" in str(e).lower():
                    raise RegistryError(
                        f"TLS error talking to registry {self.host}: {e}",
                        "--insecure-options=tls skips certificate verification") from e
                raise RegistryError(
                    f"cannot reach registry {self.host} over https: {e}",
                    "a plain-http registry needs --insecure-options=http") from e
            self.base = f"{scheme}://{self.host}"
            break
        assert resp is not None
        with resp:
            if resp.status_code >= 400 and resp.status_code not in (401, 404):
                raise RegistryError(f"registry {self.host} answered /v2/ with "
                                    f"{resp.status_code} {_error_detail(resp)}")
            resp.content  # noqa: B018 (read to its end: the connection is kept)
        if resp.status_code == 401:
            self._challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            self._authenticate()

    def _authenticate(self) -> None:
        ch = self._challenge
        if ch is None:
            return
        if ch.scheme == "basic":
            if self.credentials is None:
                raise AuthError(f"registry {self.host} requires authentication",
                                "add credentials for it in an auth.d dockerAuth file")
            self._auth_header = self.credentials.basic_header()
        elif ch.scheme == "bearer":
            self._auth_header = "Bearer " + self._fetch_token(ch)
        else:
            raise AuthError(f"registry {self.host} asks for unsupported auth "
                            f"scheme {ch.scheme!r}")

    def _fetch_token(self, ch: Challenge) -> str:
        realm = ch.params.get("realm")
        if not realm:
            raise AuthError(f"registry {self.host} sent a bearer challenge without realm")
        params = {"scope": f"repository:{self.repository}:pull"}
        if "service" in ch.params:
            params["service"] = ch.params["service"]
        headers = {}
        if self.credentials is not None:
            headers["Authorization"] = self.credentials.basic_header()
            params["account"] = self.credentials.user
        resp = self._raw_get(realm, params=params, headers=headers)
        if resp.status_code in (401, 403):
            raise AuthError(f"authentication to registry {self.host} failed: "
                            f"{_error_detail(resp) or resp.status_code}",
                            "check the user name and password in auth.d")
        if resp.status_code != 200:
            raise AuthError(f"token server {realm} answered {resp.status_code}")
        try:
            body = resp.json()
            token = body.get("token") or body.get("access_token")
        except ValueError:
            token = None
        if not isinstance(token, str) or not token:
            raise AuthError(f"token server {realm} sent no token")
        return token

    # -- requests

    def get(self, path: str, *, accept: str | None = None, what: str = "") -> Response:
        """GET /v2/<repo>/<path>; raises RegistryError unless 200."""
        self.ping()
        url = f"{self.base}/v2/{self.repository}/{path}"
        for attempt in (1, 2):
            headers = {"Accept": accept} if accept else {}
            if self._auth_header:
                headers["Authorization"] = self._auth_header
            resp = self._raw_get(url, headers=headers)
            if resp.status_code == 401 and attempt == 1 and self._challenge is not None \
                    and self._challenge.scheme == "bearer":
                resp.close()
                with self._lock:
                    self._authenticate()  # the token may have expired
                continue
            break
        if resp.status_code == 200:
            return resp
        detail = _error_detail(resp)
        resp.close()
        what = what or path
        if resp.status_code in (401, 403):
            hint = "add credentials in auth.d" if self.credentials is None else \
                "check the user name and password in auth.d"
            raise AuthError(f"registry {self.host} denied access to {self.repository} "
                            f"({what}): {detail}", hint)
        if resp.status_code == 404:
            raise NotFound(f"{what} not found in registry {self.host}: {detail}")
        raise RegistryError(f"registry {self.host}: {what}: {resp.status_code} {detail}")
