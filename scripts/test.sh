#!/usr/bin/env bash
# Installs everything (scripts/setup.sh), then runs the linters and the whole test suite.
# Extra arguments go to pytest (e.g. `scripts/test.sh tests/unit -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"
ruff check src tests bench
echo "== mypy --strict"
mypy
echo "== pytest"
exec pytest -ra "$@"
