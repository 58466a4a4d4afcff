#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs what the tests
# need (apt), starts every backend on 127.0.0.1 with data in a temp dir,
# runs fmt, clippy and all tests, then stops what it started.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -p steer-suites   # extra args go to `cargo test --all-features` instead of the whole workspace
#
# Each backend has a file in scripts/services/NAME.sh defining
# `NAME_packages` (Debian packages it needs), `start_NAME` (exports the
# STEER_TEST_* variables the tests read) and `stop_NAME`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

export STEER_REQUIRE_SERVICES=1   # a test whose backend is missing fails, never skips
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# Test binaries with line tables only (backtraces keep file:line): a third of
# the disk and much faster links than full debug info, for the same tests.
export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}

SERVICES_DIR=$(mktemp -d /tmp/steer-services.XXXXXX)
chmod 0755 "$SERVICES_DIR"
export SERVICES_DIR
STARTED=()

# log, free_port, stop_pid, wait_for
# shellcheck source=lib.sh
source scripts/lib.sh

SUMMARY=""
cleanup() {
  local rc=$?
  for ((i=${#STARTED[@]}-1; i>=0; i--)); do "stop_${STARTED[i]}" || true; done
  rm -rf "$SERVICES_DIR"
  [ -n "$SUMMARY" ] && echo "$SUMMARY"
  exit $rc
}
trap cleanup EXIT INT TERM

for f in scripts/services/*.sh; do
  [ -e "$f" ] || continue
  # shellcheck disable=SC1090
  source "$f"
done
SERVICES=()
for f in scripts/services/*.sh; do [ -e "$f" ] && SERVICES+=("$(basename "$f" .sh)"); done

# 1. Install what is missing.
need=()
for s in "${SERVICES[@]}"; do
  pk="${s}_packages"; for p in ${!pk:-}; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
for s in "${SERVICES[@]}"; do
  if declare -F "install_$s" >/dev/null; then "install_$s"; fi
done

# 2. Start the backends.
for s in "${SERVICES[@]}"; do
  log "starting $s"
  "start_$s"
  STARTED+=("$s")
done

# 3. Lint and test. (STEER_SKIP_LINT=1 skips fmt and clippy in a local edit loop; CI never sets it.)
if [ -z "${STEER_SKIP_LINT:-}" ]; then
  log "cargo fmt --check"
  cargo fmt --all -- --check
  log "cargo clippy"
  cargo clippy --workspace --all-targets --all-features -- -D warnings
fi
log "cargo test"
TEST_LOG="$SERVICES_DIR/cargo-test.log"
set +e
if [ $# -gt 0 ]; then
  cargo test --no-fail-fast --all-features "$@" 2>&1 | tee "$TEST_LOG"          # e.g. -p steer-suites
else
  cargo test --no-fail-fast --workspace --all-features 2>&1 | tee "$TEST_LOG"
fi
rc=${PIPESTATUS[0]}
# The examples the docs tell a newcomer to run must run (built by the tests
# above; these need no backend and take seconds).
if [ $# -eq 0 ]; then
  for ex in "steer quickstart" "steer-metrics webhook_sink" "steer-metrics isolation 3 1000"; do
    read -r pkg name args <<<"$ex"
    log "example $pkg/$name"
    # shellcheck disable=SC2086
    if ! cargo run -q --all-features -p "$pkg" --example "$name" -- $args >"$SERVICES_DIR/example-$name.log" 2>&1; then
      echo "example $pkg/$name failed:" >&2; tail -20 "$SERVICES_DIR/example-$name.log" >&2; rc=1
    fi
  done
fi
set -e
# One closing line for the whole run (cargo prints one per test binary).
SUMMARY=$(awk '/^test result:/ {p+=$4; f+=$6; i+=$8} END {printf "tests: %d passed, %d failed, %d skipped", p, f, i}' "$TEST_LOG")
exit "$rc"
