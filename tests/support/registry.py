"""A real Docker Registry v2 (Debian's `docker-registry`, distribution 2.8) on loopback.

    reg = Registry(workdir, auth=Auth.BASIC)   # or Auth.ANONYMOUS / Auth.TOKEN
    reg.start()
    reg.push(layout_dir, "latest", "busybox")  # skopeo copy oci:DIR:TAG docker://...
    reg.ref("busybox")                          # "docker://127.0.0.1:PORT/busybox:latest"
    reg.stop()

The registry listens on 127.0.0.1 on a free port, keeps its storage under workdir and
logs to workdir/registry.log. It is started and stopped by PID (never by name). Basic
auth uses an htpasswd file (bcrypt); token auth runs support.tokenserver in a thread.
"""

from __future__ import annotations

import enum
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt

from support.tokenserver import ISSUER, SERVICE, TokenServer

USER = "alice"
PASSWORD = "wonderland"


class Auth(enum.StrEnum):
    ANONYMOUS = "anonymous"
    BASIC = "basic"
    TOKEN = "token"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    def __init__(
        self,
        workdir: Path,
        *,
        auth: Auth = Auth.ANONYMOUS,
        users: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.auth = auth
        self.users = users if users is not None else {USER: PASSWORD}
        self.storage = workdir / "storage"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.token_server: TokenServer | None = None

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
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1).close()
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
             dest_tag: str | None = None) -> str:
        """skopeo copy oci:LAYOUT:TAG docker://HOST/REPO:DEST_TAG; returns the ref."""
        argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                "--preserve-digests"]
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
        req = urllib.request.Request(f"http://{self.host}/v2/{repo}/manifests/{ref}",
                                     headers={"Accept": accept})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.headers["Docker-Content-Digest"], r.read()
