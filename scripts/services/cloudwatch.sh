# CloudWatch emulator for the steer-sink-cloudwatch tests: moto's server,
# fronted by scripts/moto_cbor_shim.py, which speaks the Smithy rpcv2Cbor
# protocol of the current AWS SDK and forwards to moto as awsJson1_0.
# Sourced by scripts/test.sh (which defines free_port, wait_for, stop_pid,
# log and SERVICES_DIR). Tests isolate themselves by namespace.
#
#   install_cloudwatch -> a Python venv at ${STEER_VENV:-/var/cache/steer/venv}
#                         with moto[server], boto3 and cbor2 (created once,
#                         shared with other services; only what is missing
#                         is installed)
#   start_cloudwatch   -> exports
#       STEER_TEST_CLOUDWATCH_ENDPOINT=http://127.0.0.1:P2   (the shim: point the SDK here)
#       STEER_TEST_MOTO_ENDPOINT=http://127.0.0.1:P1         (moto itself, awsJson/awsQuery)
#       STEER_TEST_PYTHON=<venv>/bin/python                  (has boto3 for read-back)
#   stop_cloudwatch

# shellcheck shell=bash
cloudwatch_packages="python3-venv"
CLOUDWATCH_MOTO_PID=""
CLOUDWATCH_SHIM_PID=""

_cloudwatch_venv() { printf '%s' "${STEER_VENV:-/var/cache/steer/venv}"; }

install_cloudwatch() {
  local venv missing=()
  venv=$(_cloudwatch_venv)
  if ! [ -x "$venv/bin/python" ]; then
    log "creating Python venv at $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -c 'import moto.server, flask' >/dev/null 2>&1 || missing+=('moto[server]')
  "$venv/bin/python" -c 'import boto3' >/dev/null 2>&1 || missing+=(boto3)
  "$venv/bin/python" -c 'import cbor2' >/dev/null 2>&1 || missing+=(cbor2)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing into $venv: ${missing[*]}"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${missing[@]}"
  fi
}

_cloudwatch_ready() {
  python3 -c 'import sys, urllib.request
r = urllib.request.urlopen(sys.argv[1], timeout=1)
sys.exit(0 if r.status == 200 else 1)' "$1"
}

start_cloudwatch() {
  local venv root dir moto_port shim_port
  venv=$(_cloudwatch_venv)
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  dir="$SERVICES_DIR/cloudwatch"
  mkdir -p "$dir"
  if ! [ -x "$venv/bin/moto_server" ]; then
    log "cloudwatch: no moto_server in $venv (run install_cloudwatch)"
    return 1
  fi
  moto_port=$(free_port)
  # Plain commands in the background, so $! is the server itself.
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$dir/moto.log" 2>&1 &
  CLOUDWATCH_MOTO_PID=$!
  if ! wait_for moto 30 _cloudwatch_ready "http://127.0.0.1:$moto_port/moto-api/"; then
    tail -n 20 "$dir/moto.log" >&2 || true
    return 1
  fi
  shim_port=$(free_port)
  "$venv/bin/python" "$root/scripts/moto_cbor_shim.py" --listen "127.0.0.1:$shim_port" \
    --moto "http://127.0.0.1:$moto_port" >"$dir/shim.log" 2>&1 &
  CLOUDWATCH_SHIM_PID=$!
  if ! wait_for cbor-shim 30 _cloudwatch_ready "http://127.0.0.1:$shim_port/_shim/health"; then
    tail -n 20 "$dir/shim.log" >&2 || true
    return 1
  fi
  export STEER_TEST_CLOUDWATCH_ENDPOINT="http://127.0.0.1:$shim_port"
  export STEER_TEST_MOTO_ENDPOINT="http://127.0.0.1:$moto_port"
  export STEER_TEST_PYTHON="$venv/bin/python"
  log "cloudwatch emulator: shim $STEER_TEST_CLOUDWATCH_ENDPOINT (pid $CLOUDWATCH_SHIM_PID), moto $STEER_TEST_MOTO_ENDPOINT (pid $CLOUDWATCH_MOTO_PID)"
}

stop_cloudwatch() {
  if [ -n "$CLOUDWATCH_SHIM_PID" ]; then
    stop_pid "$CLOUDWATCH_SHIM_PID"
    CLOUDWATCH_SHIM_PID=""
  fi
  if [ -n "$CLOUDWATCH_MOTO_PID" ]; then
    stop_pid "$CLOUDWATCH_MOTO_PID"
    CLOUDWATCH_MOTO_PID=""
  fi
}
