#!/usr/bin/env bash
# Nothing sleeps on a core (issue 11 item 5, ADR 10): bale under strace with PUT, overwrite,
# DELETE, multipart, compaction and checkpoint traffic; fails if fsync, fdatasync, fallocate,
# rename*, unlink*, ftruncate or sync_file_range runs on a bale-core-* thread after /health
# answers. Bounded to ~60 s. Usage: tests/suites/45-nosleep.sh   (BALE_BIN overrides the binary)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$ROOT/scripts/setup-python.sh" >/dev/null || exit 1
if ! command -v strace >/dev/null; then
  apt-get install -y -qq strace >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq strace >/dev/null 2>&1; }
fi
if ! command -v strace >/dev/null; then
  echo "nosleep suite: FAILED (strace is not installed and could not be installed)"
  exit 1
fi
if [ -z "${BALE_BIN:-}" ] && [ ! -x "$ROOT/target/release/bale" ]; then
  (cd "$ROOT" && cargo build --release -p bale) || exit 1
fi
timeout 120 "$ROOT/tests/.venv/bin/python" "$ROOT/tests/soak/nosleep_check.py" "$@"
rc=$?
if [ "$rc" = 0 ]; then
  echo "nosleep suite: 1 passed, 0 failed"
else
  echo "nosleep suite: 0 passed, 1 failed"
fi
exit "$rc"
