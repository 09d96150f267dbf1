#!/usr/bin/env bash
# Allocations per warm fast-path GET (issue 18, docs/adr/0016-hot-path.md): builds the
# `count-allocs` test binary (its global allocator counts; GET /_bale/allocs answers the count)
# and fails when a warm 4 KiB GET at c=1 allocates more than the limit below. Lower the limit
# when a change removes allocations; never raise it without an ADR saying why.
#   tests/suites/28-allocs.sh            (BALE_ALLOCS_MAX overrides the limit)
set -euo pipefail
cd "$(dirname "$0")/../.."
MAX="${BALE_ALLOCS_MAX:-7.5}"
exec scripts/allocs-per-get.sh --counter --build --max "$MAX" 5000
