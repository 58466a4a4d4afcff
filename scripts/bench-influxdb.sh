#!/usr/bin/env bash
# InfluxDB sink benchmarks: the encoder (criterion) and end-to-end ingest
# into a real InfluxDB started here (collector + sink vs posting the same
# pre-encoded lines in the same batch size, same run).
#
#   scripts/bench-influxdb.sh                 # both
#   scripts/bench-influxdb.sh --e2e-only [throughput args...]
#   e.g. scripts/bench-influxdb.sh --e2e-only --records 200000 --batch 5000 --gzip
#
# Installs InfluxDB if missing (Debian packages), keeps its data in a temp
# dir, and stops it on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES_DIR=$(mktemp -d /tmp/steer-bench-influx.XXXXXX)
chmod 0755 "$SERVICES_DIR"
export SERVICES_DIR

log() { printf '== %s\n' "$*" >&2; }
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
wait_for() {
  local what=$1 secs=$2; shift 2
  for _ in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "$what did not become ready in ${secs}s"; return 1
}

# shellcheck source=services/influxdb.sh
source scripts/services/influxdb.sh

need=()
for p in $influxdb_packages; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  log "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cleanup() {
  local rc=$?
  stop_influxdb || true
  rm -rf "$SERVICES_DIR"
  exit $rc
}
trap cleanup EXIT INT TERM

e2e_only=0
if [ "${1:-}" = "--e2e-only" ]; then e2e_only=1; shift; fi

if [ $e2e_only = 0 ]; then
  log "criterion: encoder"
  cargo bench -p steer-sink-influxdb --bench encode
fi

start_influxdb
log "end to end (release build)"
cargo run --release -q -p steer-sink-influxdb --example throughput -- "$@"
