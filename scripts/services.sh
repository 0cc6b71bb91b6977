#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432) and NATS with JetStream (127.0.0.1:4222) are installed
# and running. The embedded default needs neither; the distributed-mode tests will. Safe to run
# again: it only installs or starts what is missing.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if ! port_open 5432; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  cluster=$(ls /etc/postgresql | head -n1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$cluster" main start || true
fi

if ! port_open 4222; then
  [ -x /usr/sbin/nats-server ] || apt_install nats-server
  as_root mkdir -p /var/lib/nats-server
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
fi

for i in $(seq 1 50); do
  if port_open 5432 && port_open 4222; then
    echo "services: postgresql 127.0.0.1:5432 and nats 127.0.0.1:4222 are up"
    exit 0
  fi
  sleep 0.2
done
echo "services: postgresql or nats did not come up" >&2
exit 1
