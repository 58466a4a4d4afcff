#!/usr/bin/env bash
# Ingest throughput of the PostgreSQL sink against `psql \copy` of the same
# rows, on a throwaway local PostgreSQL (started like scripts/services/postgres.sh).
#
#   scripts/bench-postgres.sh            # 200 000 records, 3 runs each
#   N=500000 RUNS=5 CONCURRENCY=1 scripts/bench-postgres.sh
#
# For each run: the throughput example sends N synthetic records through a
# MetricsCollector with one PostgresSink (batch 5000) into an empty table,
# timed from the first record() to the end of flush(); then the same rows,
# exported as CSV, are loaded with `psql -c "\copy ... CSV"` into an empty
# table with the same columns and indexes. Prints both rates and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-200000}
RUNS=${RUNS:-3}
BATCH=${BATCH:-5000}
CONCURRENCY=${CONCURRENCY:-2}   # the sink's write_concurrency (connections per batch)

# log, free_port, stop_pid, wait_for
# shellcheck source=lib.sh
source scripts/lib.sh

SERVICES_DIR=$(mktemp -d /tmp/steer-bench.XXXXXX)
chmod 0755 "$SERVICES_DIR"
export SERVICES_DIR
# shellcheck source=services/postgres.sh
source scripts/services/postgres.sh
cleanup() { stop_postgres || true; rm -rf "$SERVICES_DIR"; }
trap cleanup EXIT INT TERM

if ! dpkg -s postgresql >/dev/null 2>&1 && ! _pg_bindir >/dev/null; then
  log "installing postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

log "building the throughput example (release)"
cargo build --release -q -p steer-sink-postgres --example throughput
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
EXAMPLE="$TARGET_DIR/release/examples/throughput"

log "starting PostgreSQL"
start_postgres
URL=$STEER_TEST_POSTGRES_URL
PSQL="$STEER_TEST_PG_BIN/psql"
CSV="$SERVICES_DIR/rows.csv"
chmod 0755 "$SERVICES_DIR"

now() { date +%s.%N; }
sink_rates=()
copy_rates=()
for run in $(seq "$RUNS"); do
  schema="bench_$run"
  rate=$("$EXAMPLE" "$URL" "$N" "$schema" "$BATCH" "$CONCURRENCY" | sed -n 's/^records_per_sec=//p')
  sink_rates+=("$rate")

  "$PSQL" -q "$URL" -c "\\copy $schema.llm_metrics TO '$CSV' CSV"
  "$PSQL" -q "$URL" -c "CREATE TABLE $schema.copy_target (LIKE $schema.llm_metrics INCLUDING ALL)"
  t0=$(now)
  "$PSQL" -q "$URL" -c "\\copy $schema.copy_target FROM '$CSV' CSV"
  t1=$(now)
  rows=$("$PSQL" -qtA "$URL" -c "SELECT count(*) FROM $schema.copy_target")
  [ "$rows" = "$N" ] || { log "psql loaded $rows rows, expected $N"; exit 1; }
  copy_rate=$(python3 -c "print(round($N / ($t1 - $t0)))")
  copy_rates+=("$copy_rate")
  printf 'run %d: sink %8.0f records/s   psql \\copy %8.0f rows/s   ratio %.2f\n' \
    "$run" "$rate" "$copy_rate" "$(python3 -c "print($rate / $copy_rate)")"
  "$PSQL" -q "$URL" -c "SET client_min_messages = warning; DROP SCHEMA $schema CASCADE"
done

python3 - "${sink_rates[*]}" "${copy_rates[*]}" "$N" "$BATCH" "$CONCURRENCY" <<'PY'
import statistics, sys
sink = [float(x) for x in sys.argv[1].split()]
copy = [float(x) for x in sys.argv[2].split()]
ms, mc = statistics.median(sink), statistics.median(copy)
print(f"records={sys.argv[3]} batch_size={sys.argv[4]} write_concurrency={sys.argv[5]} runs={len(sink)}")
print(f"median: sink {ms:.0f} records/s, psql \\copy {mc:.0f} rows/s, ratio {ms / mc:.2f}")
PY
