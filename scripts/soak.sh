#!/usr/bin/env bash
# Soak test (issue 5, load): N minutes (default 10) of mixed GET/PUT/LIST/DELETE at high
# concurrency against one bale, zero errors expected; bale's RSS and open fds sampled every
# second; fails on any error, RSS over the bound, or fd growth. See tests/soak/soak.py --help.
#   scripts/soak.sh                 # 10 minutes
#   scripts/soak.sh --minutes 30 --get-conns 64
# Writes the figures to bench/out/soak-<date>.json as well (bench/out is not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f scripts/setup-python.sh ]; then bash scripts/setup-python.sh >/dev/null; fi
if [ ! -x tests/.venv/bin/python ]; then
    python3 -m venv tests/.venv && tests/.venv/bin/pip install -q boto3
fi
if [ -z "${BALE_BIN:-}" ] && { [ ! -x target/release/bale ] || [ ! -x target/release/bale-bench ]; }; then
    cargo build --release -p bale -p bale-bench
fi
mkdir -p bench/out
out="bench/out/soak-$(date -u +%Y%m%dT%H%M%SZ).json"
has_minutes=0; for a in "$@"; do [ "$a" = "--minutes" ] && has_minutes=1; done
if [ $has_minutes = 1 ]; then
    exec tests/.venv/bin/python tests/soak/soak.py --json-out "$out" "$@"
fi
exec tests/.venv/bin/python tests/soak/soak.py --minutes 10 --json-out "$out" "$@"
