"""`rkt-runtime features`: what this runtime honours, in the runtime spec's features
document (features.md, as `runc features` prints it)."""

from __future__ import annotations

from typing import Any

from pyrkt.oci.plan import GUEST_TYPES, RLIMITS
from pyrkt.oci.state import OCI_VERSION
from pyrkt.stage1.kvm.guest.script import CAPS

MOUNT_OPTIONS = ("bind", "rbind", "ro", "rw", "private", "rprivate", "slave", "rslave",
                 "shared", "rshared", "nosuid", "nodev", "noexec")


def features() -> dict[str, Any]:
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": [],
        "mountOptions": list(MOUNT_OPTIONS),
        "linux": {
            # Every container has all of these: the VM is its own kernel. Only a
            # network namespace is joined by path (its interfaces go to the VM).
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "uts"],
            "capabilities": [f"CAP_{c}" for c in CAPS],
            "cgroup": {"v1": False, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": False},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {
            "io.github.pyrkt.runtime.isolation": "vm",
            "io.github.pyrkt.runtime.rlimits": ",".join(RLIMITS),
            "io.github.pyrkt.runtime.guest-filesystems": ",".join(sorted(GUEST_TYPES)),
        },
    }
