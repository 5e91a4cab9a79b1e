"""Staging a single-file bind (plan.FileBind) in the pod folder at create.

The staged name is a hard link to the user's file (the kvm runner then shares it with
the VM as it shares `rkt run`'s file volumes: the app's writes land in the user's file).
Where no hard link can be made (another file system or mount: EXDEV), a read-only bind
gets a copy taken now (at most plan.MAX_FILE_COPY bytes; later changes to the file are
not seen) and a read-write one is refused.
"""

from __future__ import annotations

import os
import stat

from pyrkt.linux import beneath
from pyrkt.oci.plan import MAX_FILE_COPY, FileBind
from pyrkt.oci.spec import SpecError
from pyrkt.stage1.kvm.fileshare import SAME_FS_HINT, link_file


def stage(fb: FileBind) -> str | None:
    """Make fb.staged; a note for the runtime's log when it is a copy."""
    try:
        link_file(fb.source, fb.staged)
        return None
    except OSError as e:
        if not fb.read_only:
            raise SpecError(
                f"{fb.where}: cannot bind the file {fb.source} read-write: no hard link to "
                f"it can be made in the container's state folder: {e.strerror}",
                SAME_FS_HINT.format(where="the runtime's state folder (--root)"),
            ) from e
        why = e.strerror
    _copy(fb)
    return (f"{fb.where}: {fb.source} is a copy taken at create (no hard link: {why}): "
            "later changes to the file are not seen")


def _copy(fb: FileBind) -> None:
    """fb.staged as a new file (never written through a symlink) with the content, mode
    and owner of the user's regular file."""
    try:
        fd = os.open(fb.source, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise SpecError(f"{fb.where}: cannot read {fb.source}: {e.strerror}") from e
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SpecError(f"{fb.where}: {fb.source} is "
                            f"{beneath.file_kind(st.st_mode)}, not a file or a folder")
        data = f.read(MAX_FILE_COPY + 1)
    if len(data) > MAX_FILE_COPY:
        raise SpecError(
            f"{fb.where}: {fb.source} is larger than {MAX_FILE_COPY} bytes, too large to "
            "copy for a read-only bind", SAME_FS_HINT.format(where="the runtime's state "
                                                             "folder (--root)"))
    fb.staged.parent.mkdir(parents=True, exist_ok=True)
    with beneath.Root(fb.staged.parent) as d:
        d.write(fb.staged.name, data, stat.S_IMODE(st.st_mode) & 0o777, replace=False)
        if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
            os.chown(fb.staged.name, st.st_uid, st.st_gid, dir_fd=d.fd,
                     follow_symlinks=False)
