#!/usr/bin/env bash
# Create tests/.venv and install tests/requirements.txt into it. Idempotent: when the
# venv already has everything (a stamp matching the requirements file), it does nothing.
# Usage: scripts/setup-python.sh   (prints the venv's python path on the last line)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/tests/.venv"
REQ="$ROOT/tests/requirements.txt"
PY="${PYTHON:-python3}"

stamp_of() { sha256sum "$REQ" | cut -d' ' -f1; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup-python: creating $VENV" >&2
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 needs the venv module from apt.
    if command -v apt-get >/dev/null; then
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    fi
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
  fi
fi

if [ "$(cat "$VENV/.req-stamp" 2>/dev/null || true)" != "$(stamp_of)" ]; then
  echo "setup-python: installing $REQ" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" >&2
  stamp_of > "$VENV/.req-stamp"
fi
echo "$VENV/bin/python"
