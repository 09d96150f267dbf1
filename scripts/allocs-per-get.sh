#!/usr/bin/env bash
# Heap allocations per warm fast-path GET (issue 18's "allocations per warm hit" row), counted
# on the real release binary: uprobes on glibc's malloc and free (`perf probe`), `perf stat`
# attached to one bale (`--cores 1`) while bale-bench sends N warm 4 KiB GETs at c=1. The
# counts include everything the process allocated in that window (one request at a time, so
# that is the requests' own work). Needs root and perf (Debian: linux-perf).
#
#   scripts/allocs-per-get.sh [N]        # default N = 5000
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${1:-5000}"
BALE="${BALE_BIN:-$ROOT/target/release/bale}"
BENCH="${BALE_BENCH_BIN:-$ROOT/target/release/bale-bench}"
LIBC="$(ldd "$BALE" | awk '/libc\.so/ {print $3}')"
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 2; }
perf probe -q -x "$LIBC" malloc 2>/dev/null || true
perf probe -q -x "$LIBC" free 2>/dev/null || true
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
