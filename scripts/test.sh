#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, and the black-box tests that start the real
# `cadre` binary on free ports in temp dirs. Installs and starts what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup first" >&2; exit 1; }
scripts/services.sh
cargo test --workspace --all-targets --locked
