#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, and the black-box tests that start the real
# `cadre` binary on free ports in temp dirs. Installs and starts what is missing first.
# Ends with one summary line: "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup first" >&2; exit 1; }
scripts/services.sh
scripts/deps-browser.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
scripts/deps-python.sh
scripts/deps-promtool.sh
cargo test --workspace --all-targets --locked 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i + 1) ~ /^passed/) p += $i; if ($(i + 1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
