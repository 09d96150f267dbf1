#!/usr/bin/env bash
# Milvus on bale (issue 6):
#   1. static checks of scripts/milvus/docker-compose.yml and the Dockerfile (tests/milvus);
#   2. a real Milvus 2.3.5 standalone on bale, end to end (scripts/milvus-e2e.sh);
#   3. bale and Milvus configured only from the compose file's environment sections;
#   4. the seed's benchmark table, smoke size (scripts/seed-table.sh --smoke, issue 17);
#   5. docs/milvus.md's move of Milvus's bucket from another store to bale with rclone sync;
#   6. Milvus reaching bale over HTTPS (minio.useSSL) with a test CA in its trust store.
# Installs what it needs (tests/.venv-milvus), starts and stops its own processes.
# About 4-6 minutes once the venv exists (the seed-table smoke ~2 of them; +~1 min to install the venv). BALE_BIN overrides the binary.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY="$(bash scripts/milvus/setup-venv.sh | tail -1)"
if [ -z "${BALE_BIN:-}" ] && [ ! -x target/release/bale ]; then
  cargo build --release -p bale
fi

if ! command -v rclone >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rclone
fi

rc=0
echo "--- 50-milvus: compose file and Dockerfile checks"
"$PY" -m pytest -p no:cacheprovider -q -rfEs tests/milvus || rc=1

echo "--- 50-milvus: Milvus 2.3.5 on bale, end to end"
MILVUS_E2E_TIMEOUT="${MILVUS_E2E_TIMEOUT:-540}" timeout -k 30 660 bash scripts/milvus-e2e.sh || rc=1

echo "--- 50-milvus: bale and Milvus configured from docker-compose.yml's environment"
MILVUS_E2E_TIMEOUT=240 timeout -k 30 330 bash scripts/milvus-e2e.sh --compose scripts/milvus/docker-compose.yml || rc=1

echo "--- 50-milvus: the seed's table, smoke (scripts/seed-table.sh --smoke: 3,000 x 128, bale + local)"
timeout -k 20 240 bash scripts/seed-table.sh --smoke || rc=1

echo "--- 50-milvus: moving Milvus's bucket to bale with rclone sync (docs/milvus.md)"
MILVUS_E2E_TIMEOUT=300 timeout -k 30 390 bash scripts/milvus-e2e.sh --migrate || rc=1

echo "--- 50-milvus: Milvus over HTTPS to bale (minio.useSSL, a test CA; issue 16)"
command -v openssl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
MILVUS_E2E_TIMEOUT=180 timeout -k 30 240 bash scripts/milvus-e2e.sh --tls || rc=1

exit $rc
