#!/usr/bin/env bash
# Run the fuzz targets in fuzz/ (cargo-fuzz layout, libFuzzer).
#
#   scripts/fuzz.sh                  # every target, 600 s each, one after the other
#   scripts/fuzz.sh sse              # one target, 600 s
#   scripts/fuzz.sh sse 30           # one target, 30 s (a quick smoke check)
#   scripts/fuzz.sh all 10           # every target, 10 s each
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz passes nightly-only
# flags to rustc (-Z ... for the sanitizer-coverage instrumentation); on a
# stable toolchain RUSTC_BOOTSTRAP=1 lets it accept them, which this script
# sets for the build only. The targets are built without a sanitizer (the
# crates forbid unsafe code, so AddressSanitizer adds cost and no checks) but
# with debug assertions and overflow checks (-a).
#
# The seed corpus fuzz/corpus/TARGET (in git, small) is read; new inputs go
# to fuzz/corpus-work/TARGET (ignored by git). A crash is written to
# fuzz/artifacts/TARGET/ and the script exits non-zero.
# Extra libFuzzer flags: FUZZ_FLAGS="-jobs=2 -workers=2" scripts/fuzz.sh sse
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
target="${1:-all}"
seconds="${2:-600}"
targets=(sse provider_json provider_stream influx_line sink_spec)
if [[ "$target" != all ]]; then
    targets=("$target")
fi

if [[ "$target" == all ]]; then
    RUSTC_BOOTSTRAP=1 cargo fuzz build -s none -a --target-dir target
else
    RUSTC_BOOTSTRAP=1 cargo fuzz build -s none -a --target-dir target "$target"
fi
bin="target/$(rustc -vV | sed -n 's/^host: //p')/release"

status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus-work/$t" "artifacts/$t" "corpus/$t"
    echo "== $t: ${seconds}s" >&2
    # shellcheck disable=SC2086
    if ! nice -n 19 "$bin/$t" "corpus-work/$t" "corpus/$t" \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="artifacts/$t/" ${FUZZ_FLAGS:-}; then
        echo "!! $t: crash, see fuzz/artifacts/$t/" >&2
        status=1
    fi
done
exit "$status"
