#!/usr/bin/env bash
# Heap allocations per warm fast-path GET (issue 18's "allocations per warm hit" row): one bale
# (`--cores 1`), 100 objects of 4 KiB loaded and read 2,000 times to warm cache, code and
# connections, then N warm GETs at c=1 are counted (one request at a time, so the window holds
# only the requests' own work).
#
# Two ways to count:
#   scripts/allocs-per-get.sh [N]                    # perf uprobes on glibc malloc/free of the
#                                                    # release binary (needs root and perf)
#   scripts/allocs-per-get.sh --counter [--build] [--max X] [N]
#       # a test build with the cargo feature `count-allocs` (src/allocs.rs): its own global
#       # allocator counts, `GET /_bale/allocs` answers the count, read before and after. The
#       # binary is target/release/bale-count-allocs (BALE_ALLOCS_BIN overrides); --build makes
#       # it (cargo build --release -p bale --features count-allocs, copied aside, and the
#       # normal target/release/bale put back as it was). With --max X, exits 1 when the count per GET is above X: what CI runs
#       # (tests/suites/28-allocs.sh) so the number cannot grow unnoticed.
# Default N = 5000.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=perf
BUILD=0
MAX=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --counter) MODE=counter; shift ;;
    --build) BUILD=1; shift ;;
    --max) MAX="$2"; shift 2 ;;
    *) break ;;
  esac
done
N="${1:-5000}"
if [[ $MODE == counter ]]; then
  TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
  if [[ $BUILD == 1 ]]; then
    # The normal binary is put back by copy afterwards, not rebuilt (a second build of the
    # bale crate); a later `cargo build` sees the feature build's fingerprint and rebuilds.
    saved=""
    if [[ -x "$TARGET/release/bale" ]]; then
      saved="$(mktemp "$TARGET/release/.bale-normal.XXXXXX")"
      cp -p "$TARGET/release/bale" "$saved"
    fi
    (cd "$ROOT" && cargo build --release -p bale --features count-allocs >&2 \
      && cp "$TARGET/release/bale" "$TARGET/release/bale-count-allocs") || exit 1
    if [[ -n "$saved" ]]; then
      mv -f "$saved" "$TARGET/release/bale"
    else
      (cd "$ROOT" && cargo build --release -p bale >&2) || exit 1
    fi
  fi
  # Not BALE_BIN: scripts/test.sh exports that as the normal build, which has no counter.
  BALE="${BALE_ALLOCS_BIN:-$TARGET/release/bale-count-allocs}"
else
  BALE="${BALE_BIN:-$ROOT/target/release/bale}"
fi
BENCH="${BALE_BENCH_BIN:-$ROOT/target/release/bale-bench}"
work="$(mktemp -d /tmp/bale-allocs.XXXXXX)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$BALE" serve --listen "127.0.0.1:$port" --data "$work/data" --cores 1 --access-key allockey \
  --secret-key allocsecret1 >"$work/bale.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null && break; sleep 0.1; done
E=(--endpoint "http://127.0.0.1:$port" --access-key allockey --secret-key allocsecret1 --bucket allocs
   --prefix s/ -n 100 --size 4k)
"$BENCH" load "${E[@]}" -c 2 >/dev/null
"$BENCH" get "${E[@]}" -c 1 --requests 2000 >/dev/null          # warm: cache, code, connections
if [[ $MODE == counter ]]; then
  before="$(curl -fsS "http://127.0.0.1:$port/_bale/allocs")" || {
    echo "$BALE does not count allocations: build it with --features count-allocs (or pass --build)" >&2
    exit 2
  }
  "$BENCH" get "${E[@]}" -c 1 --requests "$N" --json >"$work/get.json"
  after="$(curl -fsS "http://127.0.0.1:$port/_bale/allocs")"
  python3 - "$before" "$after" "$work/get.json" "$N" "$MAX" <<'PY'
import json, sys
before, after, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[4])
rep = json.load(open(sys.argv[3]))["reports"][0]
assert rep["errors"] == 0 and rep["count"] == n, rep
per = (after - before) / n
print(f"warm 4 KiB GETs: {n}; allocations per GET {per:.2f} (counting allocator, count-allocs build)")
if sys.argv[5] and per > float(sys.argv[5]):
    print(f"FAIL: {per:.2f} allocations per warm GET, more than the allowed {sys.argv[5]}")
    sys.exit(1)
PY
  exit $?
fi
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 2; }
LIBC="$(ldd "$BALE" | awk '/libc\.so/ {print $3}')"
perf probe -q -x "$LIBC" malloc 2>/dev/null || true
perf probe -q -x "$LIBC" free 2>/dev/null || true
perf stat -x, -e probe_libc:malloc,probe_libc:free -p "$pid" -o "$work/stat" &
perf_pid=$!
sleep 0.5
"$BENCH" get "${E[@]}" -c 1 --requests "$N" --json >"$work/get.json"
sleep 0.2
kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
python3 - "$work/stat" "$work/get.json" "$N" <<'PY'
import json, sys
counts = {}
for line in open(sys.argv[1]):
    f = line.strip().split(",")
    if len(f) > 2 and f[2].startswith("probe_libc:"):
        counts[f[2].split(":")[1]] = int(f[0])
rep = json.load(open(sys.argv[2]))["reports"][0]
n = int(sys.argv[3])
assert rep["errors"] == 0 and rep["count"] == n, rep
print(f"warm 4 KiB GETs: {n}; malloc per GET {counts['malloc'] / n:.1f}; free per GET {counts['free'] / n:.1f}")
PY
