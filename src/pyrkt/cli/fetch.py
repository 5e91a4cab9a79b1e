"""`rkt fetch IMAGE...`: fetch images into the store and print their IDs."""

from __future__ import annotations

from pathlib import Path

from pyrkt.cli.image_common import parse_flags, progress_printer
from pyrkt.errors import UsageError
from pyrkt.image.fetch import fetch_image, parse_pull_policy
from pyrkt.image.store import short_id
from pyrkt.options import GlobalOptions

USAGE = """Usage:
  rkt fetch IMAGE_URL...

Flags:
      --full                 print the full image hash after fetching
      --pull-policy string   when to pull an image: new, never or update (default "new")
      --signature string     local signature file to use in validating the preceding image"""

FLAGS = {"full": bool, "pull-policy": str, "no-store": bool, "store-only": bool}


def _signatures(args: list[str]) -> tuple[list[str], dict[int, Path]]:
    """Take out each `--signature FILE`, which applies to the image before it."""
    rest: list[str] = []
    sigs: dict[int, Path] = {}
    images = 0
    i = 0
    while i < len(args):
        tok = args[i]
        name, eq, val = tok.partition("=")
        if name == "--signature":
            if not eq:
                if i + 1 >= len(args):
                    raise UsageError("flag needs an argument: --signature")
                i += 1
                val = args[i]
            if images == 0:
                raise UsageError("--signature must follow an image")
            sigs[images - 1] = Path(val)
        elif FLAGS.get(name.removeprefix("--")) is str and not eq and i + 1 < len(args):
            rest += [tok, args[i + 1]]  # a value flag and its value
            i += 1
        else:
            if not tok.startswith("-"):
                images += 1
            rest.append(tok)
        i += 1
    return rest, sigs


def main(argv: list[str], g: GlobalOptions) -> int:
    args, signatures = _signatures(argv[1:])
    opts, images = parse_flags(args, FLAGS, {"pull-policy": "new"})
    if opts.get("help"):
        print(USAGE)
        return 0
    if not images:
        raise UsageError("fetch: must provide at least one image", "see 'rkt fetch --help'")
    policy = str(opts["pull-policy"])
    if opts.get("no-store"):
        policy = "update"
    if opts.get("store-only"):
        policy = "never"
    parse_pull_policy(policy)
    progress = progress_printer()
    for n, ref in enumerate(images):
        image_id = fetch_image(g, ref, pull_policy=policy, progress=progress,
                               signature=signatures.get(n))  # fmt: skip
        print(image_id if opts.get("full") else short_id(image_id, 32), flush=True)
    return 0
