#!/usr/bin/env bash
# TLS and `bale doctor` (issue 16): boto3, awscli and rclone over HTTPS against a certificate
# from a CA made in the test (openssl CLI), certificate reload on SIGHUP, handshake bounds,
# TLS-only mode, start-up errors; `bale doctor` report lines and exit codes, as root and as an
# unprivileged user. Installs openssl, rclone and setpriv (util-linux) if missing. (Milvus over
# HTTPS is in suite 50: it needs the Milvus venv that suite installs.)
# Usage: tests/suites/26-tls-doctor.sh [pytest args...]   (BALE_BIN overrides the binary)
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v rclone >/dev/null || missing+=(rclone)
command -v setpriv >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
    || { $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi

bash scripts/setup-python.sh >/dev/null
if [ -z "${BALE_BIN:-}" ] && [ ! -x target/release/bale ]; then
  cargo build --release -p bale
fi

exec timeout 300 tests/.venv/bin/python -m pytest -p no:cacheprovider -q -rfE --durations=5 \
  tests/tls tests/functional/test_doctor.py "$@"
