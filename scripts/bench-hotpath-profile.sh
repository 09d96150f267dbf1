#!/usr/bin/env bash
# Issue 18's profiles: `perf record --call-graph dwarf` of one bale core (--cores 1, CPU 0,
# client on CPU 1) in each scenario bench-hotpath.py measures, and the top of
# `perf report --no-children` saved as text under bench/results/profile-<time>-<commit>/.
#
#   scripts/bench-hotpath-profile.sh [SCENARIO...]     # default: warm16 cold32 mixed1 mixed16
#   BENCH_BALE_BIN=bench/out/bale-before-hot scripts/bench-hotpath-profile.sh warm16
#
# Scenarios: warm16 (warm 4 KiB GET c=16), warm64, cold32 (--cache-mb 0, 4 KiB GET c=32),
# mixed1 / mixed16 (GET c=1 / c=16 while `bale-bench load --rate` overwrites 64 KiB objects at
# 30 % of the measured PUT capacity, compaction every second at 5 % garbage).
# PROFILE_RT=1 runs the server and the client under SCHED_FIFO (chrt -f 10), as bench-hotpath.sh
# --rt does, so builds sharing the machine do not decide the numbers; perf itself (on the client's
# CPU) stays SCHED_OTHER, or its dwarf sample writer starves the client.
# Needs root (perf, paranoid 2) and target/release/{bale,bale-bench} (built with debug = 1).
set -euo pipefail
if [ -n "${PROFILE_RT:-}" ] && [ -z "${PROFILE_RT_ON:-}" ]; then
  PROFILE_RT_ON=1 exec chrt -f 10 "$0" "$@"
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BALE="${BENCH_BALE_BIN:-$ROOT/target/release/bale}"
BENCH="${BENCH_BIN:-$ROOT/target/release/bale-bench}"
DUR_S="${PROFILE_DURATION_S:-5}"
FREQ_HZ="${PROFILE_FREQ_HZ:-299}"
SCEN=("$@")
[ ${#SCEN[@]} -gt 0 ] || SCEN=(warm16 cold32 mixed1 mixed16)
commit=$(git -C "$ROOT" rev-parse --short=9 HEAD)
label=$(basename "$BALE")
OUT="$ROOT/bench/results/profile-$(date -u +%Y%m%dT%H%M%SZ)-$commit-$label"
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/bale-prof.XXXXXX)
AK=benchaccess SK=benchsecret-prof
log() { echo "[profile] $*" >&2; }
PID=
start_bale() { # $1: cache MiB
  PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  EP="http://127.0.0.1:$PORT"
  taskset -c 0 "$BALE" serve --listen "127.0.0.1:$PORT" --data "$WORK/data" --cores 1 \
    --access-key $AK --secret-key $SK --cache-mb "$1" --compact-interval-s 1 --compact-ratio 0.05 \
    >>"$WORK/bale.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do curl -fs "$EP/health" >/dev/null 2>&1 && return; sleep 0.1; done
  log "bale did not start"; exit 1
}
stop_bale() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true; PID=; }
trap 'stop_bale; rm -rf "$WORK"' EXIT
bench() { "$BENCH" "$1" --endpoint "$EP" --access-key $AK --secret-key $SK --json --pin-cores 1 "${@:2}"; }
DS=(--prefix s4k/ -n 5000 --size 4k)
summary() {
  python3 -c 'import json,sys;r=json.load(open(sys.argv[1]))["reports"][0];print(sys.argv[1].rsplit("/",1)[1],"%.0f req/s p50 %.0f p99 %.0f us"%(r["req_per_s"],r["p50_us"],r["p99_us"]))' "$1" >&2
}
record() { # $1 name, rest: bench args (GET); PROFILE_OFF=1: the same run without perf
  local name=$1; shift
  if [ -n "${PROFILE_OFF:-}" ]; then
    bench get "${DS[@]}" "$@" -d "${DUR_S}s" >"$OUT/$name.noperf.bench.json" || true
    summary "$OUT/$name.noperf.bench.json"
    return
  fi
  chrt -o 0 taskset -c 1 perf record -F "$FREQ_HZ" -m 1024 --call-graph dwarf,8192 -p "$PID" -o "$WORK/$name.data" -- sleep "$((DUR_S + 1))" \
    2>"$WORK/$name.perf.log" &
  local pp=$!
  sleep 0.5
  bench get "${DS[@]}" "$@" -d "${DUR_S}s" >"$OUT/$name.bench.json" || true
  wait $pp || true
  perf report -i "$WORK/$name.data" --no-children --stdio --percent-limit 0.7 -g none --sort symbol \
    2>/dev/null | grep -v '^$' | head -80 >"$OUT/$name.flat.txt" || true
  perf report -i "$WORK/$name.data" --no-children --stdio --percent-limit 2 -g caller,0.5,callee,function,percent \
    --sort symbol 2>/dev/null | grep -v '^$' | head -400 >"$OUT/$name.callers.txt" || true
  summary "$OUT/$name.bench.json"
}
start_bale 2048
bench load "${DS[@]}" -c 8 >/dev/null
bench load --prefix s64k/ -n 2000 --size 64k -c 8 >"$WORK/put64.json"
CAP=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["reports"][0]["req_per_s"])' "$WORK/put64.json")
bench get "${DS[@]}" -c 16 --requests 20000 >/dev/null
for s in "${SCEN[@]}"; do
  log "$s"
  case $s in
    warm16) record warm16 -c 16 ;;
    warm64) record warm64 -c 64 ;;
    warm1) record warm1 -c 1 ;;
    cold32)
      stop_bale; sync; echo 3 >/proc/sys/vm/drop_caches || true; start_bale 0
      record cold32 -c 32
      stop_bale; start_bale 2048; bench get "${DS[@]}" -c 16 --requests 20000 >/dev/null ;;
    mixed1|mixed16)
      c=${s#mixed}
      rate=$(python3 -c "print(f'{0.3*$CAP:.1f}')")
      bench load --prefix s64k/ -n 2000 --size 64k -c 4 --rate "$rate" -d "$((DUR_S + 3))s" >"$OUT/$s.stream.json" &
      bp=$!; sleep 1
      record "$s" -c "$c"
      wait $bp || true ;;
    *) log "unknown scenario $s"; exit 2 ;;
  esac
done
log "written to $OUT (PUT capacity $CAP/s)"
