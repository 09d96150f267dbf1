#!/usr/bin/env bash
# Coverage-guided libFuzzer runs of the same targets on STABLE Rust (measured to work here:
# rustc 1.95, g++ builds libFuzzer). cargo-fuzz itself wants nightly (-Zsanitizer); without a
# sanitizer only the SanitizerCoverage pass is needed, and -Cpasses=sancov-module and
# -Cllvm-args are stable flags. Passing --target keeps these flags off build scripts and proc
# macros (they fail to link with them). No AddressSanitizer: memory errors in unsafe code and
# oversized allocations are not caught here (-malloc_limit_mb needs sanitizer malloc hooks);
# panics, overflow checks and the targets' properties are. The stable driver (io-fuzz,
# bale-fuzz) checks allocation sizes.
#
#   fuzz/libfuzzer.sh io [SECONDS]      engine decoders (quick build: few dependencies)
#   fuzz/libfuzzer.sh server [SECONDS]  server parsers (instruments all of bale's dependencies:
#                                       a long first build, ~10+ min on 2 cores)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
which="${1:-io}"
secs="${2:-60}"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
case "$which" in
  io) dir="$ROOT/io/fuzz"; targets="record_header journal journal_payload snapshot"; td="$ROOT/target/iofuzz-libfuzzer" ;;
  server) dir="$ROOT/fuzz"; targets="chunked objmeta objmeta_roundtrip bucket_name keys_file"; td="$ROOT/target/fuzz-libfuzzer" ;;
  *) echo "usage: $0 io|server [SECONDS]"; exit 2 ;;
esac
cd "$dir"
bins=""; for t in $targets; do bins="$bins --bin $t"; done
cargo build --release --features libfuzzer --target "$TRIPLE" --target-dir "$td" $bins
mkdir -p artifacts
for t in $targets; do
  work="$(mktemp -d)"; cp corpus/$t/* "$work"/ 2>/dev/null || true
  echo "== $t (${secs}s)"
  "$td/$TRIPLE/release/$t" "$work" -max_total_time="$secs" -rss_limit_mb=2048 \
      -artifact_prefix="artifacts/$t-" -print_final_stats=1 2>&1 | grep -E "DONE|Done|ERROR|SUMMARY|panicked|stat::number_of_executed_units" || true
  rm -rf "$work"
done
