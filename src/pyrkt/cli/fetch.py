"""`rkt fetch IMAGE...`: fetch images into the store and print their IDs."""

from __future__ import annotations

from pyrkt.cli.image_common import parse_flags, progress_printer
from pyrkt.errors import UsageError
from pyrkt.image.fetch import fetch_image, parse_pull_policy
from pyrkt.image.store import short_id
from pyrkt.options import GlobalOptions

USAGE = """Usage:
  rkt fetch IMAGE_URL...

Flags:
      --full                 print the full image hash after fetching
      --pull-policy string   when to pull an image: new, never or update (default "new")"""

FLAGS = {"full": bool, "pull-policy": str, "no-store": bool, "store-only": bool}


def main(argv: list[str], g: GlobalOptions) -> int:
    opts, images = parse_flags(argv[1:], FLAGS, {"pull-policy": "new"})
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
    for ref in images:
        image_id = fetch_image(g, ref, pull_policy=policy, progress=progress)
        print(image_id if opts.get("full") else short_id(image_id, 32), flush=True)
    return 0
