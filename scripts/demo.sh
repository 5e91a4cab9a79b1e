#!/usr/bin/env bash
# The main job, from a fresh machine: install everything, then run a pod.
# (Grows with the project: see README.md.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
rkt version
