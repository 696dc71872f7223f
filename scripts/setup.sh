#!/usr/bin/env bash
# Installs what the tests need that Cargo does not: a Python venv (.venv) with moto (the AWS
# emulator), boto3, the official Stream Python SDKs, Selenium and an OpenAPI validator; the
# official Stream JS SDK; and Debian's Chromium with its WebDriver for the console's browser
# tests. Idempotent: re-runs only what changed.
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

# The console tests drive a real browser: Debian's Chromium and its WebDriver (browsers that
# download their own build do not run here).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "setup: chromium and chromium-driver are missing; install them as root (apt-get install chromium chromium-driver) for the console tests" >&2
  fi
fi
