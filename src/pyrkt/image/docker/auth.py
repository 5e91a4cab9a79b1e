"""Registry credentials (rkt's auth.d `dockerAuth` files, ~/.docker/config.json) and
`WWW-Authenticate` challenge parsing.

rkt's format, in `auth.d/*.json` under the system, local and user config directories
(later ones win):

    {"rktKind": "dockerAuth", "rktVersion": "v1",
     "registries": ["quay.io", "127.0.0.1:5000"],
     "credentials": {"user": "alice", "password": "secret"}}

Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
`{"auths": {"quay.io": {"auth": base64("user:password")}}}`; rkt's files win over it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from pyrkt import log
from pyrkt.confdir import config_files
from pyrkt.errors import RktError
from pyrkt.image.docker.reference import DOCKER_HUB
from pyrkt.record import record

_HUB_KEYS = {"index.docker.io", "docker.io", "registry.hub.docker.com", DOCKER_HUB}


@record
class Credentials:
    user: str
    password: str

    def basic_header(self) -> str:
        raw = f"{self.user}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


class AuthConfigError(RktError):
    """A credentials file that cannot be used."""


def normalize_host(key: str) -> str:
    """'https://index.docker.io/v1/' -> 'registry-1.docker.io'; 'http://h:5000' -> 'h:5000'."""
    host = re.sub(r"^[a-z]+://", "", key.strip()).split("/", 1)[0].lower()
    return DOCKER_HUB if host in _HUB_KEYS else host


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise AuthConfigError(f"cannot read credentials file {path}: {e}") from e


def _rkt_auth_file(path: Path) -> dict[str, Credentials]:
    doc = _read_json(path)
    if not isinstance(doc, dict) or doc.get("rktKind") != "dockerAuth":
        return {}  # other kinds (the ACI fetcher's "auth") are not ours
    if doc.get("rktVersion") != "v1":
        raise AuthConfigError(f"{path}: unsupported rktVersion {doc.get('rktVersion')!r}",
                              "expected \"v1\"")
    regs, creds = doc.get("registries"), doc.get("credentials")
    if not isinstance(regs, list) or not all(isinstance(r, str) for r in regs):
        raise AuthConfigError(f"{path}: \"registries\" must be a list of host names")
    if not isinstance(creds, dict) or not isinstance(creds.get("user"), str) \
            or not isinstance(creds.get("password"), str):
        raise AuthConfigError(f"{path}: \"credentials\" needs string \"user\" and \"password\"")
    c = Credentials(creds["user"], creds["password"])
    return {normalize_host(r): c for r in regs}


def _docker_config(path: Path) -> dict[str, Credentials]:
    if not path.is_file():
        return {}
    doc = _read_json(path)
    auths = doc.get("auths") if isinstance(doc, dict) else None
    out: dict[str, Credentials] = {}
    if not isinstance(auths, dict):
        return out
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                user, sep, pw = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError) as e:
                raise AuthConfigError(f"{path}: bad \"auth\" for {key!r}: {e}") from e
            if not sep:
                raise AuthConfigError(f"{path}: \"auth\" for {key!r} is not user:password")
            out[normalize_host(key)] = Credentials(user, pw)
        elif isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            out[normalize_host(key)] = Credentials(entry["username"], entry["password"])
    return out


def default_docker_config() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def load_credentials(config_dirs: Iterable[Path],
                     docker_config: Path | None = None) -> dict[str, Credentials]:
    """Registry host -> credentials, from docker's config.json then each auth.d in order."""
    found = _docker_config(docker_config if docker_config is not None
                           else default_docker_config())
    for f in config_files(config_dirs, "auth.d"):
        entries = _rkt_auth_file(f)
        if entries:
            log.debug(f"credentials for {', '.join(sorted(entries))} from {f}")
        found.update(entries)
    return found


@record
class Challenge:
    scheme: str  # lower case: "basic" or "bearer"
    params: Mapping[str, str]


_PARAM = re.compile(r'\s*([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


def parse_challenge(header: str) -> Challenge:
    """`Bearer realm="https://a/token",service="reg"` -> Challenge("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else (m.group(3) or "")
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return Challenge(scheme.lower(), params)
