#!/usr/bin/env bash
# The quick start: builds cadre, runs `cadre serve` on the embedded default (SQLite in a data
# dir, in-process bus), submits a task through the supervisor tree, shows it finish and the
# tree, then stops the node. The data dir is kept so you can look at it again.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup first" >&2; exit 1; }
cargo build --locked -p cadre --bin cadre
cadre=target/debug/cadre
data=${CADRE_QUICKSTART_DIR:-target/quickstart-data}
mkdir -p "$data"

# Free ports, so the quick start works beside anything already on 50051/8080; clients find the
# node through <data-dir>/endpoints.json.
"$cadre" --data-dir "$data" serve --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 2>"$data/serve.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if [ -f "$data/endpoints.json" ] && grep -q "\"pid\": $pid" "$data/endpoints.json"; then break; fi
  kill -0 "$pid" 2>/dev/null || { cat "$data/serve.log" >&2; exit 1; }
  sleep 0.1
done
echo "== cadre serve is up: $(tr -d '\n ' < "$data/endpoints.json")"

echo "== submit intelligence.text.summarize and wait for it"
"$cadre" --data-dir "$data" submit intelligence.text.summarize --wait '{
  "text": "cadre runs tasks for fleets of AI agents. Clients submit tasks over gRPC. An orchestrator actor takes them in and hands them to supervisors. Supervisors own pools of workers that run the tasks. When a worker crashes, its supervisor restarts it and the task is retried. Every state change is an event that clients can watch live.",
  "sentences": 2
}'

echo "== the supervisor tree"
"$cadre" --data-dir "$data" status
echo "== recent tasks"
"$cadre" --data-dir "$data" tasks --limit 5
