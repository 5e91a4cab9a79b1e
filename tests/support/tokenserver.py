"""A Docker token server for the test registry (the `auth.token` flow Docker Hub uses).

`GET /token?service=S&scope=repository:NAME:pull,push` with HTTP basic credentials
returns `{"token": JWT, "access_token": JWT, "expires_in": N}`, an RS256 JWT signed by a
self-signed certificate that the registry trusts (`rootcertbundle`). Right credentials
get every action asked for; no credentials get a token granting nothing (the registry then
answers 401); wrong credentials get 401 from here.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ISSUER = "pyrkt-test-token-issuer"
SERVICE = "pyrkt-test-registry"


def make_signing_cert(dest_dir: Path) -> tuple[Path, bytes, str]:
    """Write cert.pem; return its path, the private key PEM and the cert DER (base64)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    dest_dir.mkdir(parents=True, exist_ok=True)
    cert_path = dest_dir / "token-cert.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    der_b64 = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    return cert_path, key_pem, der_b64


def _parse_scope(scope: str) -> dict[str, object] | None:
    parts = scope.split(":")
    if len(parts) < 3:
        return None
    kind, actions = parts[0], parts[-1]
    name = ":".join(parts[1:-1])
    return {"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]}


class TokenServer:
    """Serves /token on 127.0.0.1 in a thread; `stop()` shuts it down."""

    def __init__(self, workdir: Path, users: dict[str, str]) -> None:
        self.cert_path, self._key_pem, self._x5c = make_signing_cert(workdir)
        self.users = dict(users)
        self.requests: list[str] = []  # request paths seen, for tests
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                url = urlparse(self.path)
                if url.path != "/token":
                    self._reply(404, {"errors": [{"code": "NOT_FOUND"}]})
                    return
                query = parse_qs(url.query)
                account = server._check(self.headers.get("Authorization", ""))
                if account is False:
                    self._reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                                  "message": "bad credentials"}]})
                    return
                scopes = [s for v in query.get("scope", []) for s in v.split(" ")]
                access = [a for a in map(_parse_scope, scopes) if a] if account else []
                token = server._token(str(account or ""), query.get("service", [""])[0],
                                      access)
                self._reply(200, {"token": token, "access_token": token,
                                  "expires_in": 300})

            def _reply(self, code: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def _check(self, header: str) -> str | bool | None:
        """The account name, None for anonymous, False for wrong credentials."""
        if not header:
            return None
        kind, _, value = header.partition(" ")
        if kind.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False
        if self.users.get(user) != password:
            return False
        return user

    def _token(self, account: str, service: str, access: list[dict[str, object]]) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER, "sub": account, "aud": service, "exp": now + 300,
            "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access,
        }
        return jwt.encode(claims, self._key_pem, algorithm="RS256",
                          headers={"x5c": [self._x5c]})

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
