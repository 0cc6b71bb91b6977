#!/usr/bin/env bash
# Installs promtool (Debian's `prometheus` package) for orchestrator/cadre/tests/it/observability.rs:
# `promtool check metrics` on a live scrape, `promtool check rules` and `promtool test rules`
# on deploy/prometheus/. Idempotent: does nothing when promtool is on PATH.
set -euo pipefail
command -v promtool >/dev/null && exit 0
[ "$(id -u)" = 0 ] || { echo "deps-promtool: promtool is missing; install it (apt-get install prometheus) or run as root" >&2; exit 1; }
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package starts a Prometheus server on :9090 where systemd runs; the tests need only promtool.
echo "deps-promtool: installed $(promtool --version 2>&1 | head -1)"
