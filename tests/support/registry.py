"""A real Docker Registry v2 (Debian's `docker-registry`, distribution 2.8) on loopback.

    reg = Registry(workdir, auth=Auth.BASIC)   # or Auth.ANONYMOUS / Auth.TOKEN
    reg.start()
    reg.push(layout_dir, "latest", "busybox")  # skopeo copy oci:DIR:TAG docker://...
    reg.ref("busybox")                          # "docker://127.0.0.1:PORT/busybox:latest"
    reg.stop()

The registry listens on 127.0.0.1 on a free port, keeps its storage under workdir and
logs to workdir/registry.log. It is started and stopped by PID (never by name). Basic
auth uses an htpasswd file (bcrypt); token auth runs support.tokenserver in a thread.
With `tls=True` it serves https with a self-signed certificate for 127.0.0.1
(`.ca_cert`, a PEM file a client can be told to trust).
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import json
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pyrkt.linux.prctl import set_pdeathsig
from support.tokenserver import ISSUER, SERVICE, TokenServer

USER = "alice"
PASSWORD = "wonderland"


class Auth(enum.StrEnum):
    ANONYMOUS = "anonymous"
    BASIC = "basic"
    TOKEN = "token"


def make_tls_cert(dest_dir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    dest_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = dest_dir / "tls-cert.pem", dest_dir / "tls-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a TCP port on 127.0.0.1 can be bound now."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Registry:
    def __init__(
        self,
        workdir: Path,
        *,
        auth: Auth = Auth.ANONYMOUS,
        users: dict[str, str] | None = None,
        tls: bool = False,
    ) -> None:
        self.workdir = workdir
        self.auth = auth
        self.users = users if users is not None else {USER: PASSWORD}
        self.storage = workdir / "storage"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.token_server: TokenServer | None = None
        self.tls = tls
        self.ca_cert: Path | None = None

    # -- addresses

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def username(self) -> str:
        return next(iter(self.users))

    @property
    def password(self) -> str:
        return self.users[self.username]

    def ref(self, repo: str, tag: str = "latest") -> str:
        return f"docker://{self.host}/{repo}:{tag}"

    def blob_data_path(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes (to corrupt it in a test)."""
        algo, hexd = digest.split(":", 1)
        return (self.storage / "docker/registry/v2/blobs" / algo / hexd[:2] / hexd / "data")

    # -- life cycle

    def _config(self) -> dict[str, object]:
        cfg: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                        "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": "pyrkt-test-secret"},
        }
        if self.tls:
            if self.ca_cert is None:
                self.ca_cert, self._tls_key = make_tls_cert(self.workdir / "tls")
            cfg["http"]["tls"] = {  # type: ignore[index]
                "certificate": str(self.ca_cert), "key": str(self._tls_key)}
        if self.auth is Auth.BASIC:
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text("".join(
                f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
                for u, p in self.users.items()))
            cfg["auth"] = {"htpasswd": {"realm": "pyrkt-test", "path": str(htpasswd)}}
        elif self.auth is Auth.TOKEN:
            if self.token_server is None:
                self.token_server = TokenServer(self.workdir / "token", self.users)
            cfg["auth"] = {"token": {
                "realm": self.token_server.realm, "service": SERVICE, "issuer": ISSUER,
                "rootcertbundle": str(self.token_server.cert_path)}}
        return cfg

    def log_text(self) -> str:
        log = self.workdir / "registry.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def start(self, timeout: float = 20.0) -> Registry:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            self.port = free_port()
            config = self.workdir / "config.yml"
            config.write_text(json.dumps(self._config(), indent=1))  # JSON is YAML
            with open(self.workdir / "registry.log", "wb") as log:
                self.proc = subprocess.Popen(
                    ["docker-registry", "serve", str(config)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                    # dies with the test run even when pytest itself is killed
                    preexec_fn=lambda: set_pdeathsig(signal.SIGTERM),
                )
            if self._wait_ready(timeout):
                return self
            self._kill()
            if "address already in use" not in self.log_text():
                break
        raise RuntimeError(f"docker-registry did not start:\n{self.log_text()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                scheme = "https" if self.tls else "http"
                ctx = ssl._create_unverified_context() if self.tls else None
                urllib.request.urlopen(f"{scheme}://{self.host}/v2/", timeout=1,
                                       context=ctx).close()
                return True
            except urllib.error.HTTPError as e:
                return e.code == 401
            except OSError:
                time.sleep(0.05)
        return False

    def _kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        self._kill()
        if self.token_server is not None:
            self.token_server.stop()
            self.token_server = None

    # -- filling

    def push(self, layout: Path, tag: str, repo: str, *, all_platforms: bool = False,
             dest_tag: str | None = None, manifest_format: str | None = None) -> str:
        """skopeo copy oci:LAYOUT:TAG docker://HOST/REPO:DEST_TAG; returns the ref.

        Manifests and layers go as they are in the layout (digests preserved), unless
        manifest_format ("v2s2": Docker schema 2) asks skopeo to convert them.
        """
        argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
        argv += [f"--format={manifest_format}"] if manifest_format else ["--preserve-digests"]
        if all_platforms:
            argv.append("--all")
        if self.auth is not Auth.ANONYMOUS:
            argv.append(f"--dest-creds={self.username}:{self.password}")
        dest = f"{self.host}/{repo}:{dest_tag or tag}"
        argv += [f"oci:{layout}:{tag}", f"docker://{dest}"]
        cp = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            check=False, timeout=300)
        if cp.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed ({cp.returncode}): {cp.stderr.strip()}\n"
                f"registry log:\n{self.log_text()[-4000:]}")
        return f"docker://{dest}"

    def manifest(self, repo: str, ref: str, accept: str) -> tuple[str, bytes]:
        """(digest, body) of a manifest as the registry serves it (anonymous only)."""
        scheme = "https" if self.tls else "http"
        req = urllib.request.Request(f"{scheme}://{self.host}/v2/{repo}/manifests/{ref}",
                                     headers={"Accept": accept})
        ctx = ssl._create_unverified_context() if self.tls else None
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.headers["Docker-Content-Digest"], r.read()
