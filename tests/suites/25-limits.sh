#!/usr/bin/env bash
# Limits and containment: panics, slow clients, in-flight and connection limits, presigned
# expiry bound, clock skew.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$ROOT/scripts/setup-python.sh" >/dev/null
exec timeout 300 "$ROOT/tests/.venv/bin/python" -m pytest -q "$ROOT/tests/limits" "$@"
