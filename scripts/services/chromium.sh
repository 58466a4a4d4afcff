# Chromium and chromedriver for the dashboard's headless-browser test
# (crates/steer-dashboard/tests/browser.rs). Sourced by scripts/test.sh.
#
# Nothing runs in the background: the test starts chromedriver on a free
# port and chromium with a fresh profile, and stops both by PID.
#
#   start_chromium -> exports STEER_TEST_CHROMIUM and STEER_TEST_CHROMEDRIVER
#   stop_chromium  -> nothing to stop

# shellcheck shell=bash
chromium_packages="chromium chromium-driver"

start_chromium() {
  local c d
  c=$(command -v chromium) || { log "chromium is not installed"; return 1; }
  d=$(command -v chromedriver) || { log "chromedriver is not installed (package chromium-driver)"; return 1; }
  export STEER_TEST_CHROMIUM="$c" STEER_TEST_CHROMEDRIVER="$d"
  log "chromium at $c, chromedriver at $d (started by the tests)"
}

stop_chromium() {
  :
}
