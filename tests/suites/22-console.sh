#!/usr/bin/env bash
# Web console (issue 16): a real bale with --console-listen, driven by headless Chromium
# (Debian's chromium package, through Playwright's bundled driver: no browser download) —
# sign in, wrong key, create a bucket, upload, list, download byte-identical, prefix
# navigation, delete, the live chart under load — and the console listener's refusals on the
# wire. Installs what it needs (idempotent). Bounded: 180 s for the tests.
# Usage: tests/suites/22-console.sh [pytest args...]   (BALE_BIN overrides the binary;
# BALE_CONSOLE_SHOTS=docs/img refreshes the README's screenshots)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

if ! command -v chromium >/dev/null; then
    echo "22-console: installing Debian's chromium" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq chromium >/dev/null
fi
PY="$(bash scripts/setup-python.sh | tail -1)"
# setup-python installs tests/requirements.txt (playwright among them); a venv made before
# playwright joined that list still gets it here.
"$PY" -c "import playwright" 2>/dev/null ||
    "$PY" -m pip install -q --disable-pip-version-check "$(grep -E '^playwright==' tests/requirements.txt)"

if [ -z "${BALE_BIN:-}" ] && [ ! -x target/release/bale ]; then
    cargo build --release -p bale
fi

exec timeout 180 "$PY" -m pytest -p no:cacheprovider -q -rfE --durations=5 tests/console "$@"
