#!/usr/bin/env bash
# Vendor the dashboard's chart library into the binary's embedded assets,
# reproducibly from the committed lockfile:
#
#   scripts/build-dashboard.sh            # npm ci, then copy uPlot into crates/steer-dashboard/assets/vendor/
#   scripts/build-dashboard.sh --check    # the same, then fail if the committed copy differs
#
# The copied files are committed, so `cargo build` never needs npm or the
# network. Run this after changing crates/steer-dashboard/web/package.json
# (then commit package-lock.json and assets/vendor/).
set -euo pipefail
cd "$(dirname "$0")/.."
WEB=crates/steer-dashboard/web
OUT=crates/steer-dashboard/assets/vendor

(cd "$WEB" && npm ci --no-audit --no-fund --ignore-scripts >/dev/null)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cp "$WEB/node_modules/uplot/dist/uPlot.esm.js" "$TMP/uPlot.esm.js"
cp "$WEB/node_modules/uplot/dist/uPlot.min.css" "$TMP/uPlot.min.css"
cp "$WEB/node_modules/uplot/LICENSE" "$TMP/uPlot.LICENSE"
version=$(node -p "require('./$WEB/node_modules/uplot/package.json').version")
echo "uplot $version (npm registry, from $WEB/package-lock.json)" >"$TMP/VERSION"

if [ "${1:-}" = "--check" ]; then
  diff -r "$TMP" "$OUT" && echo "assets/vendor is up to date (uplot $version)"
  exit
fi
mkdir -p "$OUT"
cp "$TMP"/* "$OUT"/
echo "vendored uplot $version into $OUT"
