"""`rkt config`: the configuration of each stage, in JSON, as rkt printed it.

Reads `auth.d`, `paths.d` and `stage1.d` in the system, local and user config dirs (later
dirs override earlier ones: per domain for `auth`, per registry for `dockerAuth`, per
field for `paths`, per name-and-version pair and per location for `stage1`) and prints
`{"stage0": [entries...]}`, one entry per auth domain and per docker registry. `paths.d`
is read in the system and local dirs only, as rkt did; its `data` is also the default
`--dir` (pyrkt.cli.common). The `paths` and `stage1` entries show what this rkt uses:
the configuration over what ./configure chose (pyrkt.stage0.stage1default), the stage1
`location` being the image file beside the built rkt when that is where it comes from.
"""

from __future__ import annotations

import json
from typing import Any

from pyrkt.confdir import config_entries, paths_config
from pyrkt.errors import UsageError
from pyrkt.options import GlobalOptions
from pyrkt.stage0.stage1default import default_stage1
from pyrkt.stage0.stage1img import stage1_images_dir

USAGE = "Usage: rkt config [--pretty-print=true]"


def stage0_config(g: GlobalOptions) -> list[dict[str, Any]]:
    dirs = g.config_dirs
    auth: dict[str, dict[str, Any]] = {}
    docker: dict[str, dict[str, Any]] = {}
    for _, data in config_entries(dirs, "auth.d"):
        kind = data["rktKind"]
        if kind == "auth":
            for domain in data.get("domains", []):
                auth[domain] = {"rktVersion": "v1", "rktKind": "auth", "domains": [domain],
                                "type": data.get("type", ""),
                                "credentials": data.get("credentials", {})}
        elif kind == "dockerAuth":
            for reg in data.get("registries", []):
                docker[reg] = {"rktVersion": "v1", "rktKind": "dockerAuth",
                               "registries": [reg],
                               "credentials": data.get("credentials", {})}
    paths = {"rktVersion": "v1", "rktKind": "paths", "data": str(g.dir),
             "stage1-images": str(stage1_images_dir(g))}
    paths.update(paths_config(g.system_config, g.local_config))
    d = default_stage1(g)
    stage1 = {"rktVersion": "v1", "rktKind": "stage1", "name": d.name, "version": d.version,
              "location": d.location or (str(d.file) if d.file else "")}
    return [*auth.values(), *docker.values(), paths, stage1]


def main(argv: list[str], g: GlobalOptions) -> int:
    pretty = True
    for a in argv[1:]:
        if a in ("-h", "--help"):
            print(USAGE)
            return 0
        if a.startswith("--pretty-print"):
            pretty = a.partition("=")[2].lower() not in ("false", "0")
        else:
            raise UsageError(f"unknown flag {a!r}", USAGE)
    doc = {"stage0": stage0_config(g)}
    print(json.dumps(doc, indent=4 if pretty else None))
    return 0
