#!/usr/bin/env bash
# Client compatibility suite (issue 3): the same S3 flow with the Rust aws-sdk-s3, boto3,
# awscli, the minio Python SDK, rclone and s3cmd against a real bale. Installs what it needs
# (idempotently), starts and stops its own bale, exits non-zero if any client failed.
#   tests/suites/30-compat.sh [client...]     (default: all six)
# BALE_BIN overrides the server binary; COMPAT_CLIENT_TIMEOUT bounds one client (s, default 180).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
log() { echo "30-compat: $*" >&2; }

# Debian packages: rclone and s3cmd.
missing=()
command -v rclone >/dev/null || missing+=(rclone)
command -v s3cmd >/dev/null || missing+=(s3cmd)
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
    || { $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi

# Python clients in tests/.venv.
PY="$("$ROOT/scripts/setup-python.sh" | tail -1)"

# The Rust SDK client: its own crate, lockfile and target dir.
if [ -z "${COMPAT_RUST_BIN:-}" ]; then
  log "building tests/rust-sdk (first build takes minutes)"
  t0=$(date +%s)
  CARGO_TARGET_DIR="$ROOT/tests/rust-sdk/target" \
    cargo build --release --locked --quiet --manifest-path "$ROOT/tests/rust-sdk/Cargo.toml"
  log "tests/rust-sdk built in $(( $(date +%s) - t0 ))s"
fi

if [ -z "${BALE_BIN:-}" ] && [ ! -x "$ROOT/target/release/bale" ]; then
  log "building bale (release)"
  cargo build --release --quiet --bin bale
fi

exec timeout --kill-after=10 900 "$PY" "$ROOT/tests/compat/run.py" "$@"
