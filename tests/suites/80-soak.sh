#!/usr/bin/env bash
# Soak suite, CI quick mode (issue 5, load): 1 minute of mixed GET/PUT/LIST/DELETE at high
# concurrency with zero errors, bounded RSS and no fd growth. The long run: scripts/soak.sh
# (10 minutes by default).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec bash scripts/soak.sh --minutes "${SOAK_MINUTES:-1}" "$@"
