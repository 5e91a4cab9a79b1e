"""`rkt fetch`, `rkt trust` and `rkt image ...` on ACI files, as a user runs them."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BUSYBOX = Path("/bin/busybox")


def rkt(data: Path, *args: str, config: Path | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    cfg = [f"--local-config={config}", f"--system-config={config}/sys"] if config else []
    return subprocess.run(
        [sys.executable, "-m", "pyrkt", f"--dir={data}", *cfg, *args],
        capture_output=True, text=True, check=False, input=stdin, timeout=120,
    )  # fmt: skip


def make_aci(dest: Path, name: str = "example.com/hello", version: str = "1.0",
             payload: bytes = b"hello\n") -> Path:  # fmt: skip
    root = dest.with_suffix(".d")
    (root / "rootfs" / "bin").mkdir(parents=True)
    (root / "rootfs" / "etc").mkdir()
    (root / "rootfs" / "etc" / "greeting").write_bytes(payload)
    if BUSYBOX.exists():
        shutil.copy2(BUSYBOX, root / "rootfs" / "bin" / "busybox")
    manifest = {
        "acKind": "ImageManifest", "acVersion": "0.8.11", "name": name,
        "labels": [{"name": "version", "value": version}, {"name": "os", "value": "linux"},
                   {"name": "arch", "value": "amd64"}],
        "app": {"exec": ["/bin/busybox", "cat", "/etc/greeting"], "user": "0", "group": "0"},
    }  # fmt: skip
    (root / "manifest").write_text(json.dumps(manifest))
    with tarfile.open(dest, "w") as tf:
        tf.add(root / "manifest", "manifest")
        tf.add(root / "rootfs", "rootfs")
    shutil.rmtree(root)
    return dest


@pytest.fixture
def gpg_home() -> Iterator[Path]:
    """A throwaway GnuPG home with one signing key (short path: agent socket limits)."""
    if not shutil.which("gpg"):
        pytest.skip("needs gpg")
    home = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))
    home.chmod(0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
         "ACI Signer <signer@example.com>", "ed25519", "sign", "never"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    yield home
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    shutil.rmtree(home, ignore_errors=True)


def gpg(home: Path, *args: str) -> None:
    subprocess.run(["gpg", "--batch", "--homedir", str(home), *args], check=True,
                   capture_output=True)  # fmt: skip


def test_signed_aci_fetches_only_after_rkt_trust(tmp_path: Path, gpg_home: Path) -> None:
    aci = make_aci(tmp_path / "hello.aci")
    gpg(gpg_home, "--armor", "--detach-sign", "--output", f"{aci}.asc", str(aci))
    key = tmp_path / "pubkey.gpg"
    gpg(gpg_home, "--armor", "--output", str(key), "--export")
    data, cfg = tmp_path / "data", tmp_path / "etc"

    before = rkt(data, "fetch", str(aci), config=cfg)
    assert before.returncode == 254
    assert "not trusted for 'example.com/hello'" in before.stderr
    assert "rkt trust --prefix example.com/hello" in before.stderr
    assert before.stdout == ""

    trust = rkt(data, "trust", "--prefix=example.com/hello", "--skip-fingerprint-review",
                str(key), config=cfg)  # fmt: skip
    assert trust.returncode == 0, trust.stderr
    assert 'Added key for prefix "example.com/hello"' in trust.stdout
    stored = list((cfg / "trustedkeys" / "prefix.d" / "example.com" / "hello").iterdir())
    assert len(stored) == 1 and len(stored[0].name) == 40

    after = rkt(data, "fetch", str(aci), config=cfg)
    assert after.returncode == 0, after.stderr
    image_id = after.stdout.strip()
    assert image_id.startswith("sha512-") and len(image_id) == len("sha512-") + 32

    # a modified image no longer verifies
    raw = bytearray(aci.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    aci.write_bytes(bytes(raw))
    tampered = rkt(data, "fetch", str(aci), config=cfg)
    assert tampered.returncode == 254
    assert "bad signature" in tampered.stderr


def test_trust_prompts_and_refuses_without_yes(tmp_path: Path, gpg_home: Path) -> None:
    key = tmp_path / "pubkey.gpg"
    gpg(gpg_home, "--armor", "--output", str(key), "--export")
    cfg = tmp_path / "etc"
    cp = rkt(tmp_path / "d", "trust", "--root", str(key), config=cfg, stdin="no\n")
    assert cp.returncode == 0
    assert "GPG key fingerprint is:" in cp.stdout and "ACI Signer" in cp.stdout
    assert not (cfg / "trustedkeys" / "root.d").exists()
    cp = rkt(tmp_path / "d", "trust", "--root", str(key), config=cfg, stdin="yes\n")
    assert "Added root key at" in cp.stdout
    assert len(list((cfg / "trustedkeys" / "root.d").iterdir())) == 1
    cp = rkt(tmp_path / "d", "trust", str(key), config=cfg)
    assert cp.returncode == 254 and "--root required" in cp.stderr


def test_unsigned_aci_needs_insecure_options_image(tmp_path: Path) -> None:
    aci = make_aci(tmp_path / "hello.aci")
    data = tmp_path / "data"
    cp = rkt(data, "fetch", str(aci))
    assert cp.returncode == 254
    assert cp.stderr == f"fetch: open {aci}.asc: no such file or directory\n"  # rkt's words
    assert rkt(data, "image", "list", "--no-legend").stdout == ""
    cp = rkt(data, "--insecure-options=image", "fetch", "--full", str(aci))
    assert cp.returncode == 0, cp.stderr
    assert len(cp.stdout.strip()) == len("sha512-") + 64


def test_eight_concurrent_fetches_store_the_image_once(tmp_path: Path) -> None:
    aci = make_aci(tmp_path / "hello.aci")
    data = tmp_path / "data"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pyrkt", f"--dir={data}", "--insecure-options=image",
             "fetch", str(aci)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(8)
    ]
    results = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    assert all(rc == 0 for _, _, rc in results), results
    assert len({out.strip() for out, _, _ in results}) == 1
    listed = rkt(data, "image", "list", "--no-legend").stdout.splitlines()
    assert len(listed) == 1
    assert len(list((data / "cas" / "blobs").iterdir())) == 1


def test_image_verbs_list_cat_manifest_render_extract_export_rm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    aci = make_aci(tmp_path / "hello.aci")
    image_id = rkt(data, "--insecure-options=image", "fetch", "--full", str(aci)).stdout.strip()

    lines = rkt(data, "image", "list").stdout.splitlines()
    assert lines[0].split("\t")[0] == "ID"
    assert [c for c in lines[0].split("\t") if c] == ["ID", "NAME", "SIZE", "IMPORT TIME",
                                                       "LAST USED"]  # fmt: skip
    row = [c for c in lines[1].split("\t") if c]
    assert row[0] == image_id[: len("sha512-") + 12]
    assert row[1] == "example.com/hello:1.0"
    assert row[2].endswith("iB")
    full = rkt(data, "image", "list", "--full", "--no-legend", "--fields=id,size").stdout
    assert full.split() == [image_id, str(aci.stat().st_size)]
    doc = json.loads(rkt(data, "image", "list", "--format=json").stdout)
    assert doc[0]["id"] == image_id and doc[0]["name"] == "example.com/hello:1.0"

    manifest = json.loads(rkt(data, "image", "cat-manifest", image_id[:20]).stdout)
    assert manifest["name"] == "example.com/hello"

    out = tmp_path / "out"
    assert rkt(data, "image", "render", "--rootfs-only", "example.com/hello:1.0",
               str(out)).returncode == 0  # fmt: skip
    assert (out / "etc" / "greeting").read_text() == "hello\n"
    again = rkt(data, "image", "extract", "example.com/hello", str(out))
    assert again.returncode == 254 and "--overwrite" in again.stderr
    assert rkt(data, "image", "extract", "--overwrite", "example.com/hello",
               str(out)).returncode == 0  # fmt: skip
    assert (out / "manifest").is_file() and (out / "rootfs" / "etc" / "greeting").is_file()

    exported = tmp_path / "exported.aci"
    assert rkt(data, "image", "export", image_id, str(exported)).returncode == 0
    assert exported.read_bytes() == aci.read_bytes()
    assert rkt(data, "image", "verify").stdout.split()[-1] == "ok"

    missing = rkt(data, "image", "cat-manifest", "sha512-0000")
    assert missing.returncode == 254 and "no image" in missing.stderr
    rm = rkt(data, "image", "rm", image_id)
    assert rm.returncode == 0
    assert "1 image(s) successfully removed" in rm.stdout
    assert rkt(data, "image", "list", "--no-legend").stdout == ""
    assert not any((data / "cas" / "blobs").iterdir())
    assert not any((data / "cas" / "trees").iterdir())


def test_ambiguous_prefix_and_gc(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = []
    for i in range(12):
        aci = make_aci(tmp_path / f"a{i}.aci", name=f"example.com/a{i}", payload=b"%d" % i)
        ids.append(rkt(data, "--insecure-options=image", "fetch", "--full",
                       str(aci)).stdout.strip())  # fmt: skip
    short = rkt(data, "image", "cat-manifest", "sha512-")  # rkt: 2 characters at least
    assert (short.returncode, short.stderr) == (254, "cat-manifest: image ID too short\n")
    assert rkt(data, "image", "gc").stdout == ""  # all used just now: nothing to collect
    gc = rkt(data, "image", "gc", "--grace-period=0s")
    assert gc.returncode == 0
    assert gc.stdout.count("successfully removed aci for image ID") == 12
    assert "12 image(s) successfully removed" in gc.stdout
    assert rkt(data, "image", "list", "--no-legend").stdout == ""


class _SlowACI(http.server.BaseHTTPRequestHandler):
    """Serves the ACI; while `stall` is set, sends half of it and then waits."""

    body = b""
    stall = threading.Event()
    half_sent = threading.Event()
    release = threading.Event()

    def do_GET(self) -> None:
        if not self.path.endswith(".aci"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if self.stall.is_set():
            self.wfile.write(self.body[: len(self.body) // 2])
            self.wfile.flush()
            self.half_sent.set()
            self.release.wait(30)
            return
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_killed_fetch_leaves_nothing_and_the_next_one_completes(tmp_path: Path) -> None:
    aci = make_aci(tmp_path / "hello.aci")
    _SlowACI.body = aci.read_bytes()
    _SlowACI.stall.set()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowACI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hello.aci"
    data = tmp_path / "data"
    try:
        p = subprocess.Popen(
            [sys.executable, "-m", "pyrkt", f"--dir={data}", "--insecure-options=image,http",
             "fetch", url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert _SlowACI.half_sent.wait(60), "the fetch never started downloading"
            time.sleep(0.2)
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        _SlowACI.release.set()
        assert rkt(data, "image", "list", "--no-legend").stdout == ""
        assert not any((data / "cas" / "blobs").iterdir())
        assert not any((data / "cas" / "trees").iterdir())

        _SlowACI.stall.clear()
        cp = rkt(data, "--insecure-options=image,http", "fetch", url)
        assert cp.returncode == 0, cp.stderr
        assert len(rkt(data, "image", "list", "--no-legend").stdout.splitlines()) == 1
        rkt(data, "image", "gc")
        assert [p.name for p in (data / "cas" / "tmp").iterdir()] == []
    finally:
        _SlowACI.release.set()
        server.shutdown()
        server.server_close()


def test_eight_concurrent_first_renders_build_one_tree(tmp_path: Path) -> None:
    data = tmp_path / "data"
    aci = make_aci(tmp_path / "hello.aci")
    image_id = rkt(data, "--insecure-options=image", "fetch", "--full", str(aci)).stdout.strip()
    assert not (data / "cas" / "trees" / image_id).exists()  # ACIs render on first use
    code = (
        "import sys; from pathlib import Path; from pyrkt.image.store import Store; "
        "print(Store(Path(sys.argv[1])).render(sys.argv[2]))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(data), image_id],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]  # fmt: skip
    results = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    assert all(rc == 0 for _, _, rc in results), results
    assert {out.strip() for out, _, _ in results} == {str(data / "cas" / "trees" / image_id)}
    tree = data / "cas" / "trees" / image_id
    assert (tree / "rootfs" / "etc" / "greeting").read_text() == "hello\n"
    assert json.loads((tree / "manifest").read_text())["name"] == "example.com/hello"
    assert [p for p in (data / "cas" / "tmp").iterdir() if not p.name.endswith(".lock")] == []


def _hostile_oci_layout(dest: Path, outside: Path) -> Path:
    """An OCI layout whose one layer plants a symlink to `outside` and writes through it."""
    import gzip
    import hashlib
    import io

    def blob(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (dest / "blobs" / "sha256" / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tf.addfile(link)
        evil = tarfile.TarInfo("escape/pwned")
        evil.size = 5
        tf.addfile(evil, io.BytesIO(b"pwned"))
    layer = blob(gzip.compress(buf.getvalue()))
    config = blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                              "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    manifest = blob(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    }).encode())  # fmt: skip
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
        "annotations": {"org.opencontainers.image.ref.name": "evil"}}]}))  # fmt: skip
    return dest


def test_hostile_image_fails_cleanly_and_leaves_nothing(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    layout = _hostile_oci_layout(tmp_path / "evil-oci", outside)
    data = tmp_path / "data"
    cp = rkt(data, "fetch", f"oci:{layout}:evil")
    assert cp.returncode == 254
    assert "refusing to write through it" in cp.stderr
    assert "Traceback" not in cp.stderr
    assert list(outside.iterdir()) == []
    assert rkt(data, "image", "list", "--no-legend").stdout == ""
    assert not any((data / "cas" / "trees").iterdir())
    assert [p for p in (data / "cas" / "tmp").iterdir() if not p.name.endswith(".lock")] == []


def test_signed_aci_over_http(tmp_path: Path, gpg_home: Path) -> None:
    served = tmp_path / "www"
    served.mkdir()
    aci = make_aci(served / "hello.aci")
    gpg(gpg_home, "--armor", "--detach-sign", "--output", f"{aci}.asc", str(aci))
    key = tmp_path / "pubkey.gpg"
    gpg(gpg_home, "--armor", "--output", str(key), "--export")
    make_aci(served / "unsigned.aci", name="example.com/unsigned")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(served), **kw)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    data, cfg = tmp_path / "data", tmp_path / "etc"
    try:
        plain = rkt(data, "fetch", f"{base}/hello.aci", config=cfg)
        assert plain.returncode == 254 and "--insecure-options=http" in plain.stderr
        rkt(data, "trust", "--root", "--skip-fingerprint-review", str(key), config=cfg)
        ok = rkt(data, "--insecure-options=http", "fetch", f"{base}/hello.aci", config=cfg)
        assert ok.returncode == 0, ok.stderr
        unsigned = rkt(data, "--insecure-options=http", "fetch", f"{base}/unsigned.aci",
                       config=cfg)  # fmt: skip
        assert unsigned.returncode == 254
        assert unsigned.stderr.endswith("fetch: bad HTTP status code: 404\n")  # rkt's words
        assert len(rkt(data, "image", "list", "--no-legend").stdout.splitlines()) == 1
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("damage", ["truncated-tar", "truncated-gzip", "garbage-zstd", "no-tar"])
def test_damaged_aci_is_refused_and_nothing_stored(tmp_path: Path, damage: str) -> None:
    import gzip

    raw = make_aci(tmp_path / "hello.aci").read_bytes()
    bad = {
        "truncated-tar": lambda: raw[: len(raw) // 2],
        "truncated-gzip": lambda: gzip.compress(raw)[:20000],
        "garbage-zstd": lambda: b"\x28\xb5\x2f\xfd" + b"garbage" * 100,
        "no-tar": lambda: b"this is not an archive\n" * 100,
    }[damage]()
    aci = tmp_path / "bad.aci"
    aci.write_bytes(bad)
    data = tmp_path / "data"
    cp = rkt(data, "--insecure-options=image", "fetch", str(aci))
    assert cp.returncode == 254
    assert "Traceback" not in cp.stderr and "ACI" in cp.stderr
    assert rkt(data, "image", "list", "--no-legend").stdout == ""
    assert not any((data / "cas" / "blobs").iterdir())


def test_image_gc_keeps_images_that_pods_use(tmp_path: Path) -> None:
    data = tmp_path / "data"
    used = rkt(data, "--insecure-options=image", "fetch", "--full",
               str(make_aci(tmp_path / "a.aci", name="example.com/used"))).stdout.strip()
    unused = rkt(data, "--insecure-options=image", "fetch", "--full",
                 str(make_aci(tmp_path / "b.aci", name="example.com/unused"))).stdout.strip()
    pod = data / "pods" / "exited-garbage" / "2b0e7a52-0000-4000-8000-000000000000"
    pod.mkdir(parents=True)
    (pod / "pod").write_text(json.dumps({"apps": [{"name": "used", "image": {"id": used}}]}))
    gc = rkt(data, "image", "gc", "--grace-period=0s")
    assert gc.returncode == 0
    assert unused in gc.stdout and used not in gc.stdout
    assert rkt(data, "image", "list", "--no-legend", "--full",
               "--fields=id").stdout.split() == [used]  # fmt: skip


def test_fetch_signature_flag_names_the_preceding_images_signature(
    tmp_path: Path, gpg_home: Path
) -> None:
    aci = make_aci(tmp_path / "hello.aci")
    sig = tmp_path / "elsewhere.asc"
    gpg(gpg_home, "--armor", "--detach-sign", "--output", str(sig), str(aci))
    key = tmp_path / "pubkey.gpg"
    gpg(gpg_home, "--armor", "--output", str(key), "--export")
    data, cfg = tmp_path / "data", tmp_path / "etc"
    rkt(data, "trust", "--prefix=example.com", "--skip-fingerprint-review", str(key),
        config=cfg)  # fmt: skip
    assert rkt(data, "fetch", str(aci), config=cfg).returncode == 254  # no hello.aci.asc
    cp = rkt(data, "fetch", "--pull-policy", "new", str(aci), "--signature", str(sig),
             config=cfg)  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    bad = rkt(data, "fetch", "--signature", str(sig), str(aci), config=cfg)
    assert bad.returncode == 254 and "must follow an image" in bad.stderr
