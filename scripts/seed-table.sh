#!/usr/bin/env bash
# The seed's Milvus benchmark (issue 17), scaled to this machine: a real Milvus 2.3.5 standalone
# (PyPI's embedded `milvus`, the one scripts/milvus-e2e.sh runs) on bale, on SeaweedFS, and on
# Milvus's local storage (no object store: the floor). Per pass (fresh data dirs): insert in
# batches of 5,000, flush, HNSW (M=16, efConstruction=200), footprint in the store, cold load
# (Milvus stopped, the store restarted, page cache dropped, Milvus restarted), warm load,
# >= 1,000 single-vector top-10 searches (p50/p99, recall@10 vs numpy brute force), query by
# filter, searches returning the vector field, and the S3 requests Milvus sent by step and
# operation (counted at the relay). One pass = `scripts/milvus-e2e.sh --seedtable ...`
# (scripts/milvus/seedtable.py); this script interleaves the systems, rotating their order
# each repetition, then writes medians, a plot and the raw JSON.
#
# Usage: scripts/seed-table.sh [--smoke] [--reps R] [--rows N] [--dim D] [--searches S]
#                              [--systems "bale seaweedfs local [bale-mmap]"] [--out DIR]
#                              [--pass-timeout S] [--no-docs]
#   --smoke   ~3,000 x 128, 1 rep, bale + local, 200 searches, into a temp dir (removed when it
#             passes); fails when a pass failed or a figure is missing (CI: tests/suites/50-milvus.sh,
#             ~2 min)
#   default   20,000 x 768, 3 reps, bale seaweedfs local, 1,000 searches, into
#             bench/results/seed-table-<UTC>-<commit>/, and updates bench/RESULTS.md's
#             "Milvus, the seed's table" and README's row block (--no-docs: not)
#   bale-mmap bale with Milvus's queryNode.mmapDirPath set (2.3.5's only mmap setting)
# Needs root (namespaces, drop_caches). Prints the table; exits non-zero if a pass failed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SMOKE=0; REPS=3; ROWS=20000; DIM=768; SEARCHES=1000; FILTERQ=100; OUTVEC=100; MINRECALL=0.5
SYSTEMS="bale seaweedfs local"; OUT=""; PASS_TIMEOUT=""; DOCS=1; AUTO_OUT=0
ARGS_SEEN=""
for a in "$@"; do case "$a" in *" "*) ARGS_SEEN+=" \"$a\"" ;; *) ARGS_SEEN+=" $a" ;; esac; done
ARGS_SEEN="${ARGS_SEEN# }"
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1; REPS=1; ROWS=3000; DIM=128; SEARCHES=200; FILTERQ=20; OUTVEC=20; SYSTEMS="bale local"; DOCS=0; MINRECALL=0.8 ;;
    --reps) REPS="$2"; shift ;;
    --rows) ROWS="$2"; shift ;;
    --dim) DIM="$2"; shift ;;
    --searches) SEARCHES="$2"; shift ;;
    --systems) SYSTEMS="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --pass-timeout) PASS_TIMEOUT="$2"; shift ;;
    --no-docs) DOCS=0 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "seed-table: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$PASS_TIMEOUT" ] || PASS_TIMEOUT=$([ "$SMOKE" = 1 ] && echo 150 || echo 1200)

COMMIT="$(git rev-parse HEAD)"
SHORT="$(git rev-parse --short=9 HEAD)"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
if [ -z "$OUT" ]; then
  AUTO_OUT=1
  if [ "$SMOKE" = 1 ]; then OUT="$(mktemp -d /tmp/seed-table-smoke.XXXXXX)"
  else OUT="bench/results/seed-table-$STAMP-$SHORT"; fi
fi
mkdir -p "$OUT/raw"
SCRATCH="$(mktemp -d /tmp/seed-table-scratch.XXXXXX)"
trap 'rm -rf "$SCRATCH"' EXIT

WEED="$ROOT/bench/out/venv/bin/weed"
export WEED_BIN="${WEED_BIN:-$WEED}"
PLOTPY="$ROOT/bench/out/venv/bin/python"; [ -x "$PLOTPY" ] || PLOTPY="$ROOT/tests/.venv-milvus/bin/python"
bash scripts/milvus/setup-venv.sh >/dev/null
PY="$ROOT/tests/.venv-milvus/bin/python"
[ -x target/release/bale ] || [ -n "${BALE_BIN:-}" ] || cargo build --release -p bale

read -r -a SYS <<<"$SYSTEMS"
START_UTC="$(date -u +%FT%TZ)"; LOAD_START="$(cat /proc/loadavg)"
echo "seed-table: $REPS rep(s) of [$SYSTEMS], $ROWS x $DIM, $SEARCHES searches -> $OUT (commit $SHORT)"
: >"$OUT/commands.txt"
ORDERS=()
rc=0
for ((rep = 1; rep <= REPS; rep++)); do
  n=${#SYS[@]}; order=()
  for ((i = 0; i < n; i++)); do order+=("${SYS[$(((i + rep - 1) % n))]}"); done
  ORDERS+=("rep $rep: ${order[*]}")
  for sys in "${order[@]}"; do
    extra=""
    case "$sys" in
      bale) backend=bale; keys='{}' ;;
      seaweedfs) backend=weed; keys='{}' ;;
      local) backend=local; keys='{}' ;;
      bale-mmap) backend=bale; mkdir -p "$SCRATCH/mmap-$rep"; keys="{\"queryNode.mmapDirPath\": \"$SCRATCH/mmap-$rep\"}"
                 extra=", \"mmap_dir\": \"$SCRATCH/mmap-$rep\"" ;;
      *) echo "seed-table: unknown system $sys" >&2; exit 2 ;;
    esac
    params=$(printf '{"system": "%s", "store": "%s", "rows": %d, "dim": %d, "searches": %d, "filter_queries": %d, "outvec_searches": %d, "min_recall": %s%s}' \
      "$sys" "$backend" "$ROWS" "$DIM" "$SEARCHES" "$FILTERQ" "$OUTVEC" "$MINRECALL" "$extra")
    res="$OUT/raw/rep$rep-$sys.json"
    cmd=(scripts/milvus-e2e.sh --backend "$backend" --seedtable "$params" --milvus-keys "$keys"
         --result-out "$res" --gc-interval 3600 --bale-restart none --timeout "$PASS_TIMEOUT")
    printf '%q ' "${cmd[@]}" >>"$OUT/commands.txt"; echo >>"$OUT/commands.txt"
    echo "=== seed-table: rep $rep/$REPS, $sys ($(date -u +%T))"
    t0=$(date +%s)
    set +e
    timeout -k 30 $((PASS_TIMEOUT + 120)) bash "${cmd[@]}" >"$OUT/raw/rep$rep-$sys.log" 2>&1
    prc=$?
    set -e
    echo "    rc $prc in $(( $(date +%s) - t0 ))s; log $OUT/raw/rep$rep-$sys.log"
    if [ $prc -ne 0 ]; then
      rc=1
      tail -40 "$OUT/raw/rep$rep-$sys.log" | sed 's/^/    | /'
      [ -s "$res" ] || printf '{"pass_ok": false, "backend": "%s", "params": {"system": "%s"}, "failures": ["exit %d without a result (timeout?)"]}\n' \
        "$backend" "$sys" "$prc" >"$res"
    fi
  done
done
END_UTC="$(date -u +%FT%TZ)"; LOAD_END="$(cat /proc/loadavg)"

BALE_V="$( ("${BALE_BIN:-target/release/bale}" --version 2>/dev/null || echo bale) | head -1)"
WEED_V="$("$WEED_BIN" version 2>/dev/null | head -1 || echo '?')"
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
ORD_JSON=$(printf '%s\n' "${ORDERS[@]}" | "$PY" -c 'import json,sys; print(json.dumps(sys.stdin.read().splitlines()))')
CMDLINE="scripts/seed-table.sh${ARGS_SEEN:+ $ARGS_SEEN}"
"$PY" - "$OUT/meta.json" <<EOF
import json, sys
json.dump({"command": """$CMDLINE""", "commit": "$COMMIT", "dirty": bool("""$(git status --porcelain --untracked-files=no src io scripts | head -3)"""),
  "started": "$START_UTC", "finished": "$END_UTC", "load_start": "$LOAD_START", "load_end": "$LOAD_END",
  "machine": "$CPU, $(nproc) vCPU, $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r)",
  "servers": "bale ($BALE_V, default flags: all cores, 256 MiB cache per core), SeaweedFS $WEED_V (weed server -filer -s3), Milvus 2.3.5",
  "rows": $ROWS, "dim": $DIM, "ef": 64, "seed": 20261130, "searches": $SEARCHES, "filter_queries": $FILTERQ,
  "reps": $REPS, "systems": "$SYSTEMS".split(), "orders": $ORD_JSON, "smoke": bool($SMOKE)},
  open(sys.argv[1], "w"), indent=1)
EOF
docs=(); [ "$DOCS" = 1 ] && docs=(--docs)
"$PLOTPY" scripts/milvus/seedtable.py report "$OUT" --meta "$OUT/meta.json" "${docs[@]}"
"$PY" scripts/milvus/seedtable.py check "$OUT/summary.json" --systems "$SYSTEMS" || rc=1
echo "seed-table: results in $OUT ($( [ $rc = 0 ] && echo PASS || echo FAIL ))"
if [ "$SMOKE" = 1 ] && [ "$AUTO_OUT" = 1 ] && [ $rc = 0 ]; then rm -rf "$OUT"; fi  # CI: keep only failures
exit $rc
