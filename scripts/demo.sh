#!/usr/bin/env bash
# The main job, from a fresh machine: install everything, then the seed's two steps:
#   ./configure --with-stage1-flavors=kvm --with-stage1-kvm-hypervisors=lkvm,qemu && make
#   build/target/bin/rkt run --debug --insecure-options=image,http docker://.../redis
# (redis from a registry on loopback, in a VM under the KVM stage1, answering PING through
# a forwarded port). Extra arguments go to scripts/demo.py (e.g. --dir=DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
