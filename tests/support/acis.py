"""ACIs built by hand for tests: a manifest, a tar of `manifest` + `rootfs/`, and stage1
entrypoint annotations.

    aci_manifest(name, extra)   an ImageManifest's JSON (version/os/arch labels)
    tar_aci(src, out)           `out`, the ACI of the folder `src`
    stage1_annotations(flavor)  the entrypoint annotations of a stage1 whose entrypoints
                                are `/run`, `/stop`, `/gc`, `/enter` in its rootfs
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

VERBS = ("run", "stop", "gc", "enter")


def aci_manifest(name: str, extra: dict[str, object]) -> str:
    return json.dumps({
        "acKind": "ImageManifest", "acVersion": "0.8.11", "name": name,
        "labels": [{"name": "version", "value": "1.0"}, {"name": "os", "value": "linux"},
                   {"name": "arch", "value": "amd64"}],
        **extra,
    })  # fmt: skip


def tar_aci(src: Path, out: Path) -> Path:
    subprocess.run(["tar", "-C", str(src), "-cf", str(out), "manifest", "rootfs"], check=True)
    return out


def stage1_annotations(flavor: str | None = None) -> list[dict[str, str]]:
    anns = [{"name": f"coreos.com/rkt/stage1/{v}", "value": f"/{v}"} for v in VERBS]
    anns.append({"name": "coreos.com/rkt/stage1/interface-version", "value": "5"})
    if flavor:
        anns.append({"name": "coreos.com/rkt/stage1/flavor", "value": flavor})
    return anns
