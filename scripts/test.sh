#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, and the black-box tests that start the real
# `cadre` binary on free ports in temp dirs, then the Python and TypeScript SDK suites against
# that binary. Installs and starts what is missing first.
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
# The SDKs' own suites, against the binary `cargo test` just built (each installs its toolchain
# and packages from the registries when missing).
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$PWD/$target ;; esac
export CADRE_BIN=$target/debug/cadre
echo "== Python SDK (sdks/python)"
sdks/python/scripts/test.sh -q 2>&1 | tee -a "$log" || status=$?
echo "== TypeScript SDK (sdks/typescript)"
sdks/typescript/scripts/test.sh 2>&1 | tee -a "$log" || status=$?
# Counts: cargo's "test result:" lines, pytest's last line ("N failed, M passed in 9.1s") and
# the TypeScript runner's "typescript: N passed, M failed".
awk '/^test result:/ || /^typescript: / || /^(=+ )?[0-9]+ (passed|failed).* in [0-9.]+s/ {
       for (i = 1; i < NF; i++) {
         w = $(i + 1); gsub(/[^a-z]/, "", w)
         if (w == "passed") p += $i; if (w == "failed") f += $i
       }
     }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
