"""`rkt trust [--prefix=PREFIX] [--root] [--skip-fingerprint-review] [PUBKEY...]`.

With `--prefix` and no key, the keys are found by appc discovery (`ac-discovery-pubkeys`).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from pyrkt.appc.image import is_ac_identifier
from pyrkt.cli.image_common import parse_flags
from pyrkt.errors import RktError, UsageError
from pyrkt.image.signature import Keystore, key_info
from pyrkt.options import GlobalOptions, Insecure

USAGE = """Usage:
  rkt trust [--prefix=PREFIX] [--insecure-allow-http] [--skip-fingerprint-review] [--root] [PUBKEY ...]

Flags:
      --insecure-allow-http       allow HTTP use for key discovery and/or retrieval
      --prefix string             prefix to limit trust to
      --root                      add root key from filesystem without a prefix
      --skip-fingerprint-review   accept key without fingerprint confirmation"""  # noqa: E501

FLAGS = {"prefix": str, "root": bool, "skip-fingerprint-review": bool,
         "insecure-allow-http": bool}  # fmt: skip


def _fingerprint_display(fpr: str) -> str:
    groups = [fpr[i : i + 4].upper() for i in range(0, len(fpr), 4)]
    return " ".join(groups[:5]) + "  " + " ".join(groups[5:])


def _fetch_key(g: GlobalOptions, location: str, allow_http: bool, work: Path) -> Path:
    if not location.startswith(("http://", "https://")):
        return Path(location.removeprefix("file://"))
    from pyrkt.image.httpget import Client, TransportError

    if location.startswith("http://") and not (allow_http or g.allows(Insecure.HTTP)):
        raise RktError(f"{location}: plain http is not allowed", "use --insecure-allow-http")
    client = Client()
    try:
        with client.get(location) as resp:
            if resp.status_code != 200:
                raise RktError(f"{location}: bad HTTP status code: {resp.status_code}")
            body = resp.content
    except TransportError as e:
        raise RktError(f"cannot fetch key {e}") from e  # e starts with the URL
    finally:
        client.close()
    dest = work / "key.gpg"
    dest.write_bytes(body)
    return dest


def main(argv: list[str], g: GlobalOptions) -> int:
    opts, keys = parse_flags(argv[1:], FLAGS)
    if opts.get("help"):
        print(USAGE)
        return 0
    prefix = opts.get("prefix")
    root = bool(opts.get("root"))
    if prefix and root:
        raise UsageError("--root and --prefix usage mutually exclusive")
    if not prefix and not root:
        raise UsageError("--root required for non-prefixed (root) keys")
    if prefix is not None and not is_ac_identifier(str(prefix)):
        raise UsageError(f"invalid prefix {prefix!r}: not an AC identifier")
    allow_http = bool(opts.get("insecure-allow-http"))
    if not keys:
        if not prefix:
            raise UsageError("--root requires at least one key")
        from pyrkt.image.discovery import discover_pubkeys

        keys = discover_pubkeys(g, str(prefix), allow_http=allow_http)
    ks = Keystore(g)
    with tempfile.TemporaryDirectory(prefix="pyrkt-trust-") as work:
        for location in keys:
            path = _fetch_key(g, location, allow_http, Path(work))
            info = key_info(path)
            print(f'Prefix: "{prefix}"' if prefix else "Root key")
            print(f'Key: "{location}"')
            print(f"GPG key fingerprint is: {_fingerprint_display(info.fingerprint)}")
            for uid in info.uids:
                print(f"\t{uid}")
            if opts.get("skip-fingerprint-review"):
                print(f'Trusting "{location}" without fingerprint review.')
            else:
                print("Are you sure you want to trust this key (yes/no)?", flush=True)
                answer = sys.stdin.readline().strip().lower()
                if answer not in ("y", "yes"):
                    print(f'Not trusting "{location}"')
                    continue
                print(f'Trusting "{location}" after fingerprint review.')
            dest = ks.store(path, str(prefix) if prefix else None)
            if prefix:
                print(f'Added key for prefix "{prefix}" at "{dest}"')
            else:
                print(f'Added root key at "{dest}"')
    return 0
