#!/usr/bin/env bash
# The one test command (README; .ci/run calls it). On a fresh machine it installs what it
# needs (Python clients in tests/.venv, Debian packages, peers: each suite does its own),
# builds the release binaries, runs the Rust tests, then every tests/suites/*.sh in order.
#
#   scripts/test.sh                 # everything
#   BALE_SUITES="20 30" scripts/test.sh   # only suites whose names start with these
#   BALE_SKIP_CARGO_TEST=1 scripts/test.sh
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export BALE_BIN="$ROOT/target/release/bale"
export BALE_BENCH_BIN="$ROOT/target/release/bale-bench"
export CARGO_TERM_COLOR=never

start=$(date +%s)
declare -a results=()
failed=0

step() { # name, command...
  local name="$1"; shift
  local t0=$(date +%s)
  echo "=== $name"
  if "$@"; then
    results+=("PASS $name ($(( $(date +%s) - t0 ))s)")
  else
    results+=("FAIL $name ($(( $(date +%s) - t0 ))s)")
    failed=$((failed + 1))
  fi
}

step "build (release)" cargo build --release --workspace --locked
if [ ! -x "$BALE_BIN" ]; then
  echo "build failed: no $BALE_BIN" >&2
  exit 1
fi
if [ -z "${BALE_SKIP_CARGO_TEST:-}" ]; then
  step "cargo test (workspace, release)" cargo test --release --workspace --locked
fi

for suite in tests/suites/*.sh; do
  name="$(basename "$suite" .sh)"
  if [ -n "${BALE_SUITES:-}" ]; then
    keep=0
    for p in $BALE_SUITES; do case "$name" in "$p"*) keep=1 ;; esac; done
    [ $keep = 1 ] || continue
  fi
  step "suite $name" bash "$suite"
done

echo
echo "=== summary ($(( $(date +%s) - start ))s)"
printf '%s\n' "${results[@]}"
if [ $failed -gt 0 ]; then
  echo "$failed step(s) failed"
  exit 1
fi
echo "all passed"
