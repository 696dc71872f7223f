#!/usr/bin/env bash
# Installs what the tests need that Cargo does not: a Python venv (.venv) with moto (the AWS
# emulator), boto3 and the official Stream Python SDKs, and the official Stream JS SDK.
# Idempotent: re-runs only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
  echo "$want" > "$stamp"
fi

if [ ! -d tests/compat/js/node_modules/stream-chat ]; then
  (cd tests/compat/js && npm ci --no-audit --no-fund --loglevel=error)
fi
