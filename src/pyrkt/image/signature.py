"""Trusted keys and detached signatures, as rkt kept and checked them.

Trusted keys are ASCII-armored public keys stored under a config dir's `trustedkeys/`:

    trustedkeys/root.d/<fingerprint>                  trusted for every image
    trustedkeys/prefix.d/<prefix>/<fingerprint>       trusted for names under <prefix>

(`<prefix>` is an image name prefix such as `example.com/app`, kept as nested folders;
`<fingerprint>` is the key's lower-case hex fingerprint.) The system config dir
(`/usr/lib/rkt`) is read first, then the local one (`/etc/rkt`); an empty file in the
local dir masks the system key of that fingerprint. `rkt trust` writes to the local dir.

Signatures are checked by `gpg` in a throwaway home holding just the keys that apply.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pyrkt import proc
from pyrkt.errors import RktError
from pyrkt.options import GlobalOptions


class SignatureError(RktError):
    """An image whose signature is missing, invalid or by an untrusted key."""


@dataclass(frozen=True)
class KeyInfo:
    fingerprint: str  # lower-case hex
    uids: tuple[str, ...]


def _gpg(home: Path, *args: str | Path, check: bool = True) -> str:
    cp = proc.run(["gpg", "--batch", "--no-tty", "--homedir", home, *args],
                  capture=True, check=check)  # fmt: skip
    return cp.stdout


def key_info(key_file: Path) -> KeyInfo:
    """Fingerprint and user IDs of the (first) public key in key_file."""
    home = Path(tempfile.mkdtemp(prefix="pyrkt-gpg-"))
    try:
        home.chmod(0o700)
        out = _gpg(home, "--with-colons", "--import-options", "show-only", "--import",
                   key_file)  # fmt: skip
    except RktError as e:
        raise RktError(f"{key_file}: not a valid public key") from e
    finally:
        shutil.rmtree(home, ignore_errors=True)
    fpr = ""
    uids: list[str] = []
    seen_pub = False
    for line in out.splitlines():
        f = line.split(":")
        if f[0] == "pub":
            if seen_pub:
                break
            seen_pub = True
        elif f[0] == "fpr" and not fpr:
            fpr = f[9].lower()
        elif f[0] == "uid" and len(f) > 9:
            uids.append(f[9])
    if not fpr:
        raise RktError(f"{key_file}: no public key found")
    return KeyInfo(fpr, tuple(uids))


class Keystore:
    def __init__(self, g: GlobalOptions) -> None:
        self.system = g.system_config / "trustedkeys"
        self.local = g.local_config / "trustedkeys"

    def keys_for(self, name: str) -> list[Path]:
        """Key files trusted for image `name` (root keys and keys of every prefix)."""
        comps = name.split("/")
        prefixes = ["/".join(comps[: i + 1]) for i in range(len(comps))]
        found: dict[str, Path] = {}
        for base in (self.system, self.local):
            dirs = [base / "root.d"] + [base / "prefix.d" / p for p in prefixes]
            for d in dirs:
                if not d.is_dir():
                    continue
                for f in sorted(d.iterdir()):
                    if not f.is_file():
                        continue
                    if f.stat().st_size == 0:
                        found.pop(f.name, None)  # masked
                    else:
                        found[f.name] = f
        return list(found.values())

    def store(self, key_file: Path, prefix: str | None) -> Path:
        """Trust key_file for prefix (None: root key); returns where it was stored."""
        info = key_info(key_file)
        d = self.local / "root.d" if prefix is None else self.local / "prefix.d" / prefix
        d.mkdir(parents=True, exist_ok=True)
        dest = d / info.fingerprint
        tmp = d / f".{info.fingerprint}.tmp"
        shutil.copyfile(key_file, tmp)
        tmp.chmod(0o644)
        tmp.rename(dest)
        return dest


def verify(ks: Keystore, name: str, data: Path, sig: Path) -> str:
    """Check a detached signature of data by a key trusted for name; the signer's fpr."""
    if not sig.is_file():
        raise SignatureError(
            f"image {name!r} is not signed: no signature at {sig}",
            "use --insecure-options=image to fetch it anyway",
        )
    keys = ks.keys_for(name)
    home = Path(tempfile.mkdtemp(prefix="pyrkt-gpg-"))
    try:
        home.chmod(0o700)
        if keys:
            _gpg(home, "--import", *keys)
        cp = proc.run(
            ["gpg", "--batch", "--no-tty", "--homedir", home, "--status-fd", "1",
             "--verify", sig, data],
            capture=True, check=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(home, ignore_errors=True)
    status = [line.split() for line in cp.stdout.splitlines() if line.startswith("[GNUPG:]")]
    for words in status:
        if len(words) > 2 and words[1] == "VALIDSIG" and cp.returncode == 0:
            return words[2].lower()
    for words in status:
        if len(words) > 2 and words[1] in ("NO_PUBKEY", "ERRSIG"):
            raise SignatureError(
                f"image {name!r} is signed by key {words[2]}, which is not trusted "
                f"for {name!r}",
                f"trust it with 'rkt trust --prefix {name} KEYFILE'",
            )
    for words in status:
        if len(words) > 1 and words[1] == "BADSIG":
            raise SignatureError(f"image {name!r}: bad signature (the image was modified)")
    raise SignatureError(f"image {name!r}: signature verification failed: "
                         f"{cp.stderr.strip().splitlines()[-1] if cp.stderr.strip() else '?'}")
