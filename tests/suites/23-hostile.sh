#!/usr/bin/env bash
# Hostile clients (issue 12): anonymous trickled bodies, anonymous POST forms, idle connection
# floods, DeleteBucket racing a PUT, oversized DeleteObjects, abandoned PUTs. Each runs while a
# canary client checks the server keeps answering and RSS is watched. Bounded: 300 s.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$ROOT/scripts/setup-python.sh" >/dev/null
exec timeout 300 "$ROOT/tests/.venv/bin/python" -m pytest -p no:cacheprovider -q -rfE -s "$ROOT/tests/hostile" "$@"
