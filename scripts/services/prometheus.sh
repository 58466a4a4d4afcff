# Prometheus for the steer-sink-prometheus integration tests.
# Sourced by scripts/test.sh (which defines log).
#
# The test starts Prometheus itself: it must first bind the exporter on a
# free port and write a scrape config naming it. This script only makes
# sure the binary is installed and tells the test where it is.
#
#   start_prometheus -> exports STEER_TEST_PROMETHEUS_BIN=<path of prometheus>
#   stop_prometheus  -> nothing to stop (the test kills its own child)

# shellcheck shell=bash
prometheus_packages="prometheus"

start_prometheus() {
  local bin
  if ! bin=$(command -v prometheus); then
    log "prometheus is not installed"
    return 1
  fi
  export STEER_TEST_PROMETHEUS_BIN="$bin"
  log "prometheus binary at $STEER_TEST_PROMETHEUS_BIN (started by the tests)"
}

stop_prometheus() {
  :
}
