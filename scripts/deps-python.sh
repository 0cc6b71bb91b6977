#!/usr/bin/env bash
# Installs the Python clients that orchestrator/cadre/tests/it/clients.rs drives: a venv at
# ${CARGO_TARGET_DIR:-target}/pyenv with tests/python/requirements.txt, and curl.
# Idempotent: does nothing when the venv already holds this exact requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
venv=$target/pyenv
req=tests/python/requirements.txt
stamp=$venv/requirements.sha256

apt_install() {
  [ "$(id -u)" = 0 ] || { echo "deps-python: missing $*; install it (apt-get install $*) or run as root" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v curl >/dev/null || apt_install curl
command -v python3 >/dev/null || apt_install python3 python3-venv

want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

rm -rf "$venv"
if ! python3 -m venv "$venv" 2>/dev/null; then
  # Debian's python3 has no ensurepip until python3-venv is installed.
  rm -rf "$venv"
  apt_install python3-venv
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" >"$stamp"
echo "deps-python: installed $req into $venv"
