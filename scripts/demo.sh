#!/usr/bin/env bash
# The main job, from a fresh machine: install everything, then run the seed's example:
# redis from a (local) Docker registry, in a VM under the KVM stage1, answering PING
# through a forwarded port. Extra arguments go to scripts/demo.py (e.g. --debug).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
