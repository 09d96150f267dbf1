#!/usr/bin/env bash
# Mirrored data directories (issue 14, ADR 19): either directory removed (reads byte-identical,
# PUTs 503), rebuild of an empty directory in the failed position, a stale directory put back,
# one copy overwritten with random bytes while serving, and a SIGKILL loop (50 kill points)
# checked from each copy alone. Usage: tests/suites/47-disks.sh [--kills N] (BALE_BIN overrides
# the binary).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -f scripts/setup-python.sh ]; then
    bash scripts/setup-python.sh >/dev/null
fi
if [ -z "${BALE_BIN:-}" ] && [ ! -x target/release/bale ]; then
    cargo build --release -p bale
fi
if timeout 600 tests/.venv/bin/python tests/disks/mirror_check.py "$@"; then
    echo "disks suite: 1 passed, 0 failed"
else
    echo "disks suite: 0 passed, 1 failed"
    exit 1
fi
