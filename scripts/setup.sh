#!/usr/bin/env bash
# Installs what pyrkt needs on a fresh Debian 12 machine, idempotently:
# Debian packages (apt-get), then a virtual environment .venv with pyrkt and its test
# tools (pip). Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  qemu-system-x86 qemu-utils linux-image-amd64 busybox-static cpio kmod
  docker-registry skopeo umoci runc podman
  # rkt-runtime's peers in tests: containerd 1.6 (ctr, the runc v2 shim), podman, runc
  containerd
  containernetworking-plugins iptables iproute2
  redis-server redis-tools zstd gnupg e2fsprogs hyperfine
  # the tailored guest kernel (rkt stage1 kernel) and the stage1 build (make, strace in tests)
  linux-source-6.1 build-essential flex bison bc libelf-dev libssl-dev lz4 make git strace
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  # The Debian package starts a registry on :5000; tests start their own on loopback.
  if systemctl list-unit-files docker-registry.service >/dev/null 2>&1; then
    $SUDO systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3.12 python3.13 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY=$(command -v "$c"); break
    fi
  done
fi
[ -n "$PY" ] || { echo "setup: need Python 3.11 or newer" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.pyrkt-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing pyrkt and its test tools into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi
# Bytecode for pyrkt itself, written now: a shell with PYTHONDONTWRITEBYTECODE=1 would
# otherwise recompile every module on every `rkt` command (tens of milliseconds of start-up).
.venv/bin/python -m compileall -q -j 0 src >/dev/null
# `rkt` without Python's `site` start-up (~8% of a `rkt run`; pyrkt/cli/launcher.py),
# written over pip's console script every time (pip rewrites it on each install).
.venv/bin/python -m pyrkt.cli.launcher .venv/bin/rkt
.venv/bin/python -m pyrkt.cli.launcher .venv/bin/rkt-runtime --module pyrkt.oci.cli
# The tailored guest kernel for the kvm stage1: built once per machine from Debian's
# linux-source-6.1 (about 4 minutes on 2 idle cores), cached in /var/cache/pyrkt/kernel,
# instantly reused afterwards. VM pods start about 3 times faster with it; if it cannot be
# built, the kvm stage1 falls back to the distro kernel and its modules.
if ! .venv/bin/rkt stage1 kernel >/dev/null; then
  echo "setup: warning: the tailored guest kernel could not be built; VM pods will use the distro kernel" >&2
fi
