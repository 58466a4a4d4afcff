#!/usr/bin/env bash
# Regenerate the built-in price snapshot (crates/steer/src/prices/) from the
# community-maintained price map (LiteLLM's model_prices_and_context_window.json,
# shipped in its PyPI package).
#
#   scripts/update-prices.sh                 # latest release of the package
#   scripts/update-prices.sh 1.110.2         # a given release
#   scripts/update-prices.sh path/to/map.json  # a local copy of the map
#
# Then run `cargo test -p steer --test prices` and review `git diff`.
set -euo pipefail
cd "$(dirname "$0")/.."
arg=${1:-}
if [ -n "$arg" ] && [ -f "$arg" ]; then
  exec python3 scripts/update_prices.py "$arg" crates/steer/src/prices
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" "litellm${arg:+==$arg}"
python3 scripts/update_prices.py "$tmp"/litellm-*.whl crates/steer/src/prices
