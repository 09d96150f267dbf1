#!/usr/bin/env bash
# Redundant data directories (issue 14, ADR 19). Mirror (tests/disks/mirror_check.py, 2 dirs):
# either directory removed (reads byte-identical, PUTs 503), rebuild of an empty directory in
# the failed position, a stale directory put back, one copy overwritten with random bytes
# while serving, and a SIGKILL loop (100 kill points) checked from each copy alone. Erasure
# coding (tests/disks/ec_check.py, 6 dirs ec:4+2, small volumes so stripes form): one or two
# dirs removed, a dir's volumes overwritten, three removed (refused), an emptied dir rebuilt
# then two others removed, and a SIGKILL loop (85 kill points) during writes and encoding.
# Faults (tests/disks/fault_check.py, one ec:4+2 dir on a loop-mounted ext4): the disk filled
# (507), remounted read-only (503 for its shards, reads whole), and shut down under load (every
# I/O fails: GETs still right, PUTs 200 or 503, never 500; rebuilt at the next start). Reads
# (tests/disks/reads_check.py): one O_DIRECT read per healthy cold 4 KiB GET from a stripe
# member, counted by bale and at the block device.
# Rebuild while serving (tests/disks/rebuild_check.py, 6 dirs ec:4+2): an emptied dir's stripe
# files rebuilt in the background while every GET is served, checked by removing two others,
# and a SIGKILL during the rebuild (redone at the next start).
# Usage: tests/suites/47-disks.sh (BALE_BIN overrides the binary).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -f scripts/setup-python.sh ]; then
    bash scripts/setup-python.sh >/dev/null
fi
if [ -z "${BALE_BIN:-}" ] && [ ! -x target/release/bale ]; then
    cargo build --release -p bale
fi
passed=0
failed=0
if timeout 600 tests/.venv/bin/python tests/disks/mirror_check.py --kills 100; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi
if timeout 600 tests/.venv/bin/python tests/disks/ec_check.py --kills 85; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi
if timeout 300 tests/.venv/bin/python tests/disks/fault_check.py; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi
if timeout 300 tests/.venv/bin/python tests/disks/reads_check.py; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi
timeout 600 tests/.venv/bin/python tests/disks/ec_compact_check.py && passed=$((passed + 1)) || failed=$((failed + 1))
if timeout 300 tests/.venv/bin/python tests/disks/rebuild_check.py; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
echo "disks suite: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
