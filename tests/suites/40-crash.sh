#!/usr/bin/env bash
# Crash suite (issue 5): kill -9 torture under PUT/overwrite/delete load (quick: ~30 kill points
# in <= 3 minutes; pass --long for hundreds), then power-loss shapes (torn/zeroed tails of the
# volume and journal files) and bit rot (flipped bytes -> 500, never wrong bytes).
# Usage: tests/suites/40-crash.sh [--long]      (BALE_BIN overrides the binary)
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -f scripts/setup-python.sh ]; then
    bash scripts/setup-python.sh >/dev/null
elif [ ! -x tests/.venv/bin/python ]; then
    python3 -m venv tests/.venv
    tests/.venv/bin/pip install -q boto3 minio requests pytest
fi
PY=tests/.venv/bin/python

if [ -z "${BALE_BIN:-}" ] && [ ! -x target/release/bale ]; then
    cargo build --release -p bale
fi

fail=0
if [ "${1:-}" = "--long" ]; then
    $PY tests/crash/torture.py --long "${@:2}" || fail=1
    $PY tests/crash/torture.py --long --kills 100 --data-dirs 3 "${@:2}" || fail=1
    $PY tests/crash/powerloss.py --rounds 10 || fail=1
else
    $PY tests/crash/torture.py --kills 30 --max-seconds 150 --min-kills 10 "$@" || fail=1
    $PY tests/crash/torture.py --kills 10 --max-seconds 60 --min-kills 5 --data-dirs 2 --cores 2 "$@" || fail=1
    $PY tests/crash/powerloss.py --rounds 2 || fail=1
fi
if [ $fail -ne 0 ]; then
    echo "crash suite: 0 passed, 1 failed"
    exit 1
fi
echo "crash suite: 1 passed, 0 failed"
