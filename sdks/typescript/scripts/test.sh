#!/usr/bin/env bash
# The TypeScript SDK's tests against the real `cadre` binary: installs the pinned dependencies
# when node_modules is missing or older than package-lock.json, builds (tsc), type-checks a
# strict consumer, runs the suite with the `ws` and the global WebSocket, and checks that the
# committed dist/ matches the sources (fatal in CI). Ends with "typescript: N passed, N failed".
#
#   sdks/typescript/scripts/test.sh          # CADRE_BIN defaults to target/debug/cadre
set -euo pipefail

sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$(cd "$sdk/../.." && pwd)"
export CADRE_BIN="${CADRE_BIN:-$root/target/debug/cadre}"

# Node 20.3 or later: from Debian's packages when missing.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node/npm missing: installing Debian's nodejs and npm" >&2
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 3) ? 0 : 1)'; then
  echo "the TypeScript SDK needs Node 20.3 or later; this is $(node --version)" >&2
  exit 1
fi

if [ ! -x "$CADRE_BIN" ]; then
  echo "no $CADRE_BIN: building it (cargo build -p cadre)" >&2
  (cd "$root" && cargo build -p cadre)
fi

cd "$sdk"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm test

# dist/ is shipped (so `npm install <folder>` needs no build): the committed one must be the
# build of src/. In CI (CI=true) a difference fails; elsewhere it is a reminder to commit it.
if git -C "$root" ls-files --error-unmatch sdks/typescript/dist/index.js >/dev/null 2>&1 &&
  ! git -C "$root" diff --quiet -- sdks/typescript/dist; then
  echo "sdks/typescript/dist differs from the build of src/: commit the rebuilt dist/" >&2
  git -C "$root" diff --stat -- sdks/typescript/dist >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
fi
