#!/usr/bin/env bash
# The long run of the disk checks (issue 14): what suite 47 runs in CI, at the issue's sizes.
# Mirror and ec:4+2 with 5,000 objects of 4 KiB - 64 MiB (one multipart each) and 300 SIGKILL
# points each, the fault check (full, read-only, dying loop disk) with 1,000 objects, and any
# further tests/disks/*_check.py at their defaults. Takes about an hour on 2 cores; needs root.
# Usage: scripts/disk-torture.sh [OBJECTS] [KILLS]   (BALE_BIN overrides the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
objects="${1:-5000}"
kills="${2:-300}"
if [ -f scripts/setup-python.sh ]; then
    bash scripts/setup-python.sh >/dev/null
fi
if [ -z "${BALE_BIN:-}" ]; then
    cargo build --release -p bale
fi
py=tests/.venv/bin/python
failed=0
run() {
    echo "== $*"
    local t0=$SECONDS
    if "$@"; then echo "== passed in $((SECONDS - t0)) s: $*"; else echo "== FAILED: $*"; failed=$((failed + 1)); fi
}
run $py tests/disks/mirror_check.py --objects "$objects" --kills "$kills"
run $py tests/disks/ec_check.py --objects "$objects" --kills "$kills"
run $py tests/disks/fault_check.py --objects $((objects / 5))
for f in tests/disks/*_check.py; do
    case "$f" in
        */mirror_check.py | */ec_check.py | */fault_check.py) ;;
        *) run $py "$f" ;;
    esac
done
echo "disk torture: $failed failed"
[ "$failed" -eq 0 ]
