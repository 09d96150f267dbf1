#!/usr/bin/env bash
# Milvus on bale, end to end: a real Milvus 2.3.5 standalone (PyPI's embedded `milvus` package:
# etcd and rocksmq inside) stores everything in bale, driven by pymilvus: create a collection
# (dim 128), insert 20,000 vectors, flush, HNSW index, release, load, search (self-recall,
# p50/p95), query, delete, compact, drop; boto3 checks that insert_log/, stats_log/,
# delta_log/ and index_files/ objects appeared in bale and that Milvus's GC removed them.
#
# Milvus runs in its own network and PID namespaces (unshare): every port it opens is on the
# namespace's private loopback; its S3 traffic reaches bale (127.0.0.1 on the host) through a
# unix socket relay. When the namespace's PID 1 exits, the kernel kills all that is left in it.
#
# Usage: scripts/milvus-e2e.sh [--rows N] [--searches N] [--keep] ...   (see scripts/milvus/e2e.py)
# Env:   BALE_BIN            bale binary (default target/release/bale, built if missing)
#        MILVUS_E2E_S3=weed  run against SeaweedFS (`weed` on PATH) instead of bale: a stand-in
#        MILVUS_E2E_TIMEOUT  seconds for the Milvus part (default 600)
#        MILVUS_E2E_KEEP=1   keep the work dir (logs, milvus.yaml) even on success
# Prints the report and PASS or FAIL; exits non-zero on failure. Needs root (unshare --net).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/tests/.venv-milvus"

[ "$(uname -m)" = x86_64 ] || { echo "milvus-e2e: SKIP: the milvus 2.3.5 wheel is Linux x86_64 only"; exit 0; }
if ! command -v unshare >/dev/null; then
  echo "milvus-e2e: FAIL: unshare (util-linux) is needed to keep Milvus's listeners private" >&2
  exit 1
fi
if ! unshare --net --pid --fork --kill-child --mount-proc true 2>/dev/null; then
  echo "milvus-e2e: FAIL: cannot create network/PID namespaces here (needs root or CAP_SYS_ADMIN)" >&2
  exit 1
fi

# --- venv with milvus + pymilvus, idempotent ---
bash scripts/milvus/setup-venv.sh >/dev/null

# --- bale binary ---
if [ "${MILVUS_E2E_S3:-bale}" = bale ] && [ -z "${BALE_BIN:-}" ] && [ ! -x target/release/bale ]; then
  cargo build --release -p bale
fi

# --- run; the python side stops everything it started; this trap is the backstop ---
PIDFILE="$(mktemp /tmp/milvus-e2e-pids.XXXXXX)"
export MILVUS_E2E_PIDFILE="$PIDFILE"
child=""
cleanup() {
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$child" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$child" 2>/dev/null || true
  fi
  # Whatever the driver recorded and did not stop (bale, the unshare holding Milvus): by pid.
  if [ -s "$PIDFILE" ]; then
    while read -r pid; do
      [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    done < "$PIDFILE"
  fi
  rm -f "$PIDFILE"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$VENV/bin/python" -u scripts/milvus/e2e.py outer "$@" &
child=$!
set +e
wait "$child"
rc=$?
set -e
child=""
exit "$rc"
