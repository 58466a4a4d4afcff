# InfluxDB 1.x for the steer-sink-influxdb integration tests.
# Sourced by scripts/test.sh (which defines free_port, wait_for, stop_pid,
# log and SERVICES_DIR). Tests create their own uniquely named databases.
#
#   start_influxdb   -> exports STEER_TEST_INFLUXDB_URL=http://127.0.0.1:PORT
#                       and, so a test can stop and restart the server on the
#                       same data dir and port (crates/steer-suites outage test):
#                       STEER_TEST_INFLUXD_BIN     the influxd binary
#                       STEER_TEST_INFLUXDB_CONFIG its config file
#                       STEER_TEST_INFLUXDB_PID    the PID it started with
#                       STEER_TEST_INFLUXDB_PIDFILE a file holding the current PID
#                                                  (a test that restarts the server
#                                                  writes the new PID there)
#   stop_influxdb    -> stops the PID in the PID file (or the one it started)

# shellcheck shell=bash
influxdb_packages="influxdb influxdb-client"
INFLUXDB_PID=""

start_influxdb() {
  local dir="$SERVICES_DIR/influx" port rpc
  port=$(free_port)
  rpc=$(free_port)
  mkdir -p "$dir/meta" "$dir/data" "$dir/wal"
  cat >"$dir/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$rpc"

[meta]
  dir = "$dir/meta"

[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$port"
  log-enabled = false
  max-body-size = 0
EOF
  # A plain command in the background, so $! is the server itself.
  influxd -config "$dir/influxdb.conf" >"$dir/influxd.log" 2>&1 &
  INFLUXDB_PID=$!
  echo "$INFLUXDB_PID" >"$dir/influxd.pid"
  if ! wait_for influxdb 30 _influxdb_ping "$port"; then
    tail -n 20 "$dir/influxd.log" >&2 || true
    return 1
  fi
  export STEER_TEST_INFLUXDB_URL="http://127.0.0.1:$port"
  export STEER_TEST_INFLUXD_BIN
  STEER_TEST_INFLUXD_BIN=$(command -v influxd)
  export STEER_TEST_INFLUXDB_CONFIG="$dir/influxdb.conf"
  export STEER_TEST_INFLUXDB_PID="$INFLUXDB_PID"
  export STEER_TEST_INFLUXDB_PIDFILE="$dir/influxd.pid"
  log "influxdb ready at $STEER_TEST_INFLUXDB_URL (pid $INFLUXDB_PID)"
}

# GET /ping answers 204 once the server is up (python3, like free_port:
# no curl needed).
_influxdb_ping() {
  python3 -c 'import sys, urllib.request
r = urllib.request.urlopen("http://127.0.0.1:%s/ping" % sys.argv[1], timeout=1)
sys.exit(0 if r.status == 204 else 1)' "$1"
}

stop_influxdb() {
  local pidfile="$SERVICES_DIR/influx/influxd.pid" cur
  # A test may have restarted the server: the PID file names the current one.
  if [ -f "$pidfile" ] && cur=$(head -1 "$pidfile" 2>/dev/null) && [ -n "$cur" ] && [ "$cur" != "$INFLUXDB_PID" ]; then
    stop_pid "$cur"
  fi
  if [ -n "$INFLUXDB_PID" ]; then
    stop_pid "$INFLUXDB_PID"
    INFLUXDB_PID=""
  fi
}
