#!/usr/bin/env bash
# Config file and access keys (issue 16): `--config bale.toml` over every serve flag,
# `bale config check`, the keys file (read-only / read-write keys, bucket scopes, every write
# operation refused outside them), SIGHUP reload with a keep-alive connection open.
# Usage: tests/suites/24-config-keys.sh [pytest args...]   (BALE_BIN overrides the binary)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
scripts/setup-python.sh >/dev/null
if [ -z "${BALE_BIN:-}" ] && [ ! -x target/release/bale ]; then
    cargo build --release -p bale
fi
exec timeout 240 tests/.venv/bin/python -m pytest -p no:cacheprovider -q -rfE tests/keys "$@"
