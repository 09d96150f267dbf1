#!/usr/bin/env bash
# Functional suite (issue 2): every S3 op of the issue against a real bale, through boto3, the
# minio SDK and raw requests signed by tests/functional/sigv4.py (incl. minio-go's aws-chunked
# streaming), auth, bad input, signals and startup errors.
# Usage: tests/suites/20-functional.sh [pytest args...]   (BALE_BIN overrides the binary)
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -f scripts/setup-python.sh ]; then
    bash scripts/setup-python.sh >/dev/null
elif [ ! -x tests/.venv/bin/python ]; then
    python3 -m venv tests/.venv
    tests/.venv/bin/pip install -q boto3 minio requests pytest
fi

if [ -z "${BALE_BIN:-}" ] && [ ! -x target/release/bale ]; then
    cargo build --release -p bale
fi

exec tests/.venv/bin/python -m pytest -p no:cacheprovider -q -rfE --durations=10 tests/functional "$@"
