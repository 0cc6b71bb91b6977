#!/usr/bin/env bash
# Runs the Python SDK's test suite against the real cadre binary: makes a venv at
# ${CARGO_TARGET_DIR:-target}/sdk-pyenv (re-made when pyproject.toml changes), installs this
# package with its test extras from the folder (as a user would, not in editable mode), type-checks
# it with mypy --strict, and runs pytest with CADRE_BIN (default: <target>/debug/cadre; build it
# with `cargo build -p cadre`). Extra arguments go to pytest.
set -euo pipefail
sdk=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$sdk/../.." && pwd)
cd "$repo"
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$repo/$target ;; esac
venv=$target/sdk-pyenv
stamp=$venv/pyproject.sha256
export CADRE_BIN=${CADRE_BIN:-$target/debug/cadre}
[ -x "$CADRE_BIN" ] || { echo "sdk test: $CADRE_BIN is missing; run cargo build -p cadre" >&2; exit 1; }

if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "sdk test: install python3 and python3-venv" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
fi

want=$(sha256sum "$sdk/pyproject.toml" | cut -d' ' -f1)
if ! [ -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$sdk[test]"
  echo "$want" >"$stamp"
fi
# The package itself every time (its code changes more often than its dependencies).
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$sdk"

export PYTHONDONTWRITEBYTECODE=1
cd "$sdk"
"$venv/bin/python" -m mypy --strict --config-file pyproject.toml --cache-dir "$target/sdk-mypy-cache" src/cadre_sdk examples ../../examples/python-worker/worker.py
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
