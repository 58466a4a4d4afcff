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

# log, free_port, stop_pid, wait_for
# shellcheck source=lib.sh
source scripts/lib.sh

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
