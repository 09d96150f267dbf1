#!/usr/bin/env bash
# Create tests/.venv-milvus with scripts/milvus/requirements.txt (milvus 2.3.5, pymilvus, boto3,
# pytest). Idempotent: does nothing when the stamp matches the requirements file.
# Prints the venv's python on the last line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/tests/.venv-milvus"
REQ="$ROOT/scripts/milvus/requirements.txt"
PY="${PYTHON:-python3}"

stamp() { sha256sum "$REQ" | cut -d' ' -f1; }
if [ ! -x "$VENV/bin/python" ]; then
  echo "milvus venv: creating $VENV" >&2
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    if command -v apt-get >/dev/null; then
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    fi
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
  fi
fi
echo '*' > "$VENV/.gitignore"   # never committed
if [ "$(cat "$VENV/.req-stamp" 2>/dev/null || true)" != "$(stamp)" ]; then
  echo "milvus venv: installing $REQ (the milvus 2.3.5 wheel is ~58 MB)" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" >&2
  stamp > "$VENV/.req-stamp"
fi
echo "$VENV/bin/python"
