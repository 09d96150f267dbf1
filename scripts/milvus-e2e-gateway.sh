#!/usr/bin/env bash
# Milvus end to end through a bale gateway (issue 15): starts a SeaweedFS (`weed server -s3`,
# the tests' helper in tests/gateway/conftest.py), then runs scripts/milvus-e2e.sh with bale in
# gateway mode in front of it (BALE_UPSTREAM* environment variables, which `bale serve` reads).
# Usage: scripts/milvus-e2e-gateway.sh [milvus-e2e.sh args, e.g. --rows 5000 --searches 50]
# Env:   WEED_BIN (default tests/.venv-gateway/bin/weed, then bench/out/venv/bin/weed)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
exec tests/.venv/bin/python - "$@" <<'PY'
import os, subprocess, sys
sys.path.insert(0, "tests/gateway"); sys.path.insert(0, "tests/lib")
from conftest import Weed, WEED_AK, WEED_SK
w = Weed().start()
try:
    env = dict(os.environ, BALE_UPSTREAM=w.endpoint, BALE_UPSTREAM_ACCESS_KEY=WEED_AK,
               BALE_UPSTREAM_SECRET_KEY=WEED_SK)
    print(f"milvus-e2e-gateway: SeaweedFS at {w.endpoint}; bale runs as its gateway", flush=True)
    rc = subprocess.call(["scripts/milvus-e2e.sh", *sys.argv[1:]], env=env)
finally:
    w.stop()
sys.exit(rc)
PY
