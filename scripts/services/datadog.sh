# Datadog has no local server: the steer-sink-datadog tests run a capture
# server inside the test and validate every captured body against the
# official API schema with the Python `datadog-api-client` models.
# Sourced by scripts/test.sh (which defines log).
#
#   install_datadog  -> a Python venv at ${STEER_VENV:-/var/cache/steer/venv}
#                       with datadog-api-client (created once, then reused)
#   start_datadog    -> exports STEER_TEST_DD_VALIDATOR="<venv>/bin/python <repo>/scripts/validate_datadog_payload.py"
#   stop_datadog     -> nothing to stop

# shellcheck shell=bash
datadog_packages="python3-venv"

_datadog_venv() { printf '%s' "${STEER_VENV:-/var/cache/steer/venv}"; }

install_datadog() {
  local venv
  venv=$(_datadog_venv)
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import datadog_api_client' >/dev/null 2>&1; then
    return 0
  fi
  log "creating Python venv with datadog-api-client at $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check datadog-api-client
}

start_datadog() {
  local venv root
  venv=$(_datadog_venv)
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  if ! [ -x "$venv/bin/python" ]; then
    log "datadog: no venv at $venv (run install_datadog)"
    return 1
  fi
  export STEER_TEST_DD_VALIDATOR="$venv/bin/python $root/scripts/validate_datadog_payload.py"
  log "datadog payload validator: $STEER_TEST_DD_VALIDATOR"
}

stop_datadog() {
  :
}
