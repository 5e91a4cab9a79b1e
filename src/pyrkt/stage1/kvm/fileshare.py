"""Single files shared with a VM: 9p exports folders, not files, so a file volume's
share is a folder of the pod holding the user's file under another name, a hard link
(the same file: what the app writes lands in the user's file, as with a bind). Used
by the kvm runner (`rkt run`'s file volumes) and by rkt-runtime (file bind mounts)."""

from __future__ import annotations

import os
from pathlib import Path

# Why a hard link can be impossible, for a user who meets it.
SAME_FS_HINT = ("a single file is shared with the VM through a hard link in the pod "
                "folder: keep it on the same file system as {where}, or share its folder")


def link_file(source: Path, dest: Path) -> None:
    """dest, in a folder the host owns, becomes another name of source's file
    (source, named by the user, is followed if a symlink); whatever dest was is
    removed first, itself (a symlink is never followed). OSError as link(2) fails:
    EXDEV across file systems (or mounts), EPERM (protected_hardlinks)..."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    os.link(source, dest)
