"""How the hypervisor is executed, and the files it opens: what its jail must show.

Two cases, found as the runner always found the hypervisor (on the PATH, where a stage1
image that bundles QEMU puts its `kvm/bin` first):
- the stage1's bundled QEMU: its loader run directly (the wrapper script would need a
  shell in the jail), the bundle folder executable in the jail;
- the host's QEMU: the binary, every library `ldd` names, its modules folder and its
  firmware folders (`-L help`). `ldd` costs tens of milliseconds, so the list is cached
  in the rkt cache folder, keyed by the binary's inode, size and mtime.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from pyrkt.errors import RktError
from pyrkt.record import record
from pyrkt.stage1.kvm.jail import Access

CACHE_FILE = "kvm-hypervisor-files.json"
LD_CACHE = Path("/etc/ld.so.cache")  # spares the loader a search of every library folder


@record
class HypervisorExec:
    argv0: tuple[str, ...]  # replaces argv[0] of the hypervisor's command line
    env: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[Path, Access], ...] = ()


def for_path(found: Path, binary: str, stage1_rootfs: Path, cache: Path) -> HypervisorExec:
    """How to run `binary`, found on the PATH at `found`, in the jail."""
    from pyrkt.stage1.build import bundle

    wrappers = stage1_rootfs / bundle.WRAPPER_DIR
    if binary == bundle.QEMU_BINARY and found.parent.resolve() == wrappers.resolve():
        argv, env = bundle.bundled_exec(stage1_rootfs, binary)
        return HypervisorExec(tuple(argv), tuple(env.items()),
                              ((stage1_rootfs / bundle.BUNDLE_DIR, Access.EXEC),))
    return HypervisorExec((str(found),), (), host_files(found, cache))


def host_files(binary: Path, cache: Path) -> tuple[tuple[Path, Access], ...]:
    """The files a host QEMU opens (cached; recomputed when one of them is gone)."""
    real = binary.resolve()
    st = real.stat()
    key = f"{real}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    cfile = cache / CACHE_FILE
    try:
        data = json.loads(cfile.read_text())
        if data["key"] == key:
            files = tuple((Path(p), Access(a)) for p, a in data["files"])
            if all(os.path.exists(p) for p, _ in files):
                return files
    except (OSError, ValueError, KeyError, TypeError):
        pass
    files = _scan(binary)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cfile.with_suffix(f".{os.getpid()}")
        tmp.write_text(json.dumps({"key": key, "files": [[str(p), a] for p, a in files]}))
        os.replace(tmp, cfile)
    except OSError:
        pass  # a read-only cache: scan again next time
    return files


def _scan(binary: Path) -> tuple[tuple[Path, Access], ...]:
    from pyrkt.stage1.build import bundle

    files = [(binary, Access.EXEC)]
    files += [(lib, Access.EXEC) for lib in bundle.ldd_paths(binary)]
    for name in bundle.DLOPENED:
        lib = bundle.find_library(name)
        if lib is not None:
            files.append((lib, Access.EXEC))
    with contextlib.suppress(RktError):  # a QEMU built without modules has none
        files.append((bundle.module_dir(binary), Access.EXEC))
    files += [(d, Access.RO) for d in bundle.qemu_search_dirs(binary) if d.is_dir()]
    if LD_CACHE.is_file():
        files.append((LD_CACHE, Access.RO))
    return tuple(files)
