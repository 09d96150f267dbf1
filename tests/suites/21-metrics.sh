#!/usr/bin/env bash
# Metrics suite (issue 16): GET /metrics against a real bale (exact counter movement per
# operation and status, errors by code, histogram shape, engine counters, auth rules, the
# --metrics-listen port, OpenMetrics, request ids in the log), then a real Prometheus (the
# Debian package, run here on a free loopback port, never as a system service) scraping bale
# under load and answering histogram_quantile through its HTTP API; the monitoring files.
# Usage: tests/suites/21-metrics.sh [pytest args...]   (BALE_BIN overrides the binary)
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -f scripts/setup-python.sh ]; then
    bash scripts/setup-python.sh >/dev/null
elif [ ! -x tests/.venv/bin/python ]; then
    python3 -m venv tests/.venv
    tests/.venv/bin/pip install -q -r tests/requirements.txt
fi

# Prometheus from Debian; its package would start a service on :9090, so forbid service starts
# for the install (policy-rc.d 101) and run the binary ourselves in the tests.
if ! command -v prometheus >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    [ -n "$made_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d
    # If a service manager started it anyway, stop it: the tests pick their own port.
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
        $SUDO systemctl stop prometheus || true
    fi
fi

if [ -z "${BALE_BIN:-}" ] && [ ! -x target/release/bale ]; then
    cargo build --release -p bale
fi

tests/.venv/bin/python -m pytest -p no:cacheprovider -q -rfE --durations=5 tests/metrics "$@"
