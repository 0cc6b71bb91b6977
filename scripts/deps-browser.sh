#!/usr/bin/env bash
# Installs what the dashboard's browser test needs (orchestrator/cadre/tests/it/dashboard.rs):
# Debian's Chromium at /usr/bin/chromium, and playwright-core in tests/browser/node_modules
# (pinned in tests/browser/package-lock.json). Idempotent: does nothing when both are there.
# Needs node and npm; installing Chromium needs root (or sudo) and apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "deps-browser: installing chromium with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

if [ ! -d tests/browser/node_modules/playwright-core ]; then
  command -v npm >/dev/null || { echo "deps-browser: npm is missing: install Node.js 20 or newer" >&2; exit 1; }
  echo "deps-browser: npm ci in tests/browser"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
