#!/usr/bin/env bash
# Fuzz suite (issue 5, hostile input): a bounded run of every fuzz target on stable Rust.
#   io/fuzz  (engine decoders: record header, journal image, journal entry, index snapshot)
#   fuzz     (server library: aws-chunked scanner, ObjMeta decode and round trip, bucket names)
#   fuzz-http (raw and signed HTTP/S3 requests through a real bale over a socket)
# Each target runs its committed corpus, then generated and mutated inputs for FUZZ_SECONDS
# (default 5 s per target; fuzz-http FUZZ_HTTP_SECONDS, default 20 s). Any panic, overflow,
# property violation, oversized allocation, bale crash, hang or panic in bale's log fails the suite.
# Findings land in fuzz/artifacts/ and io/fuzz/artifacts/ (not committed).
# Long run: FUZZ_SECONDS=300 FUZZ_HTTP_SECONDS=600 tests/suites/70-fuzz.sh
# Coverage-guided libFuzzer builds of the same targets (stable Rust): fuzz/libfuzzer.sh
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
S="${FUZZ_SECONDS:-5}"
HS="${FUZZ_HTTP_SECONDS:-20}"
SEED="${FUZZ_SEED:-$(date +%s)}"
export CARGO_TERM_COLOR=never
fail=0

echo "--- build (io/fuzz, fuzz)"
# io/fuzz has a handful of light dependencies: its own target dir. fuzz/ depends on the bale
# library: it shares target/ (same release profile, so the dependencies built there are reused).
(cd io/fuzz && cargo build --release --quiet --target-dir "$ROOT/target/iofuzz" --bin io-fuzz) || { echo "io/fuzz build failed"; exit 1; }
(cd fuzz && cargo build --release --quiet --target-dir "$ROOT/target" --bin bale-fuzz --bin fuzz-http) || { echo "fuzz build failed"; exit 1; }
BALE="${BALE_BIN:-$ROOT/target/release/bale}"
if [ ! -x "$BALE" ]; then cargo build --release -p bale || exit 1; fi

echo "--- engine decoders (seed $SEED, ${S}s per target)"
# The driver's default allocation limit (256 MiB) applies: F1 (decode_snapshot reserving 2 GiB
# from a forged object count) is fixed, so any allocation that large is a finding again.
target/iofuzz/release/io-fuzz --seconds "$S" --seed "$SEED" || fail=1

echo "--- server library parsers (seed $SEED, ${S}s per target)"
target/release/bale-fuzz --seconds "$S" --seed "$SEED" || fail=1

echo "--- raw HTTP through bale (seed $SEED, ${HS}s)"
target/release/fuzz-http --seconds "$HS" --seed "$SEED" --bale "$BALE" || fail=1

if [ $fail -ne 0 ]; then
    echo "fuzz suite: FAILED (rerun a finding: <driver> --target NAME --repro FILE; seed $SEED)"
    exit 1
fi
echo "fuzz suite: passed"
