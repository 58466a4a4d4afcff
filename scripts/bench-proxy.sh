#!/usr/bin/env bash
# `steer proxy` against calling the upstream directly, and LiteLLM's proxy
# against the same upstream, in one run (figures in docs/benchmarks.md).
#
#   scripts/bench-proxy.sh                    # 10 s per measurement, 100 connections
#   SECONDS_PER_RUN=20 CONCURRENCY=100 scripts/bench-proxy.sh
#   NO_LITELLM=1 scripts/bench-proxy.sh       # steer only
#   NO_BUILD=1 scripts/bench-proxy.sh         # use the release binaries already built
#
# Processes (all on this machine, 127.0.0.1):
#   upstream  crates/steer-proxy/examples/bench_proxy.rs `upstream`: a fake
#             OpenAI replaying recorded answers; model gpt-4o waits 50 ms
#             (before the first event of a stream), gpt-4o-mini answers at once
#   floor     bench_proxy `passthrough`: the same server and client stack as
#             steer proxy (axum/hyper, reqwest), forwarding and nothing else:
#             what any proxy built on it pays, measured in the same run
#   steer     `steer proxy` (release build), SQLite store in a temp dir
#   litellm   `litellm --config` (PyPI litellm[proxy], venv at
#             ${STEER_LITELLM_VENV:-/var/cache/steer/litellm-venv}), both
#             models routed to the same upstream
#   load      bench_proxy `load`: CONCURRENCY connections, calls back to back
#
# Measurements, each for direct / floor / steer / litellm:
#   latency     gpt-4o (50 ms upstream), non-streaming: added p50/p99 latency
#   ttft        gpt-4o streaming: added TTFT p50/p99 (first event with output)
#   throughput  gpt-4o-mini (zero latency): calls/s, and the ratio to direct
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECONDS_PER_RUN:-10}
WARMUP=${WARMUP:-2}
CONCURRENCY=${CONCURRENCY:-100}
VENV=${STEER_LITELLM_VENV:-/var/cache/steer/litellm-venv}

# log, free_port, stop_pid, wait_for
# shellcheck source=lib.sh
source scripts/lib.sh
ready() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1"; }
posts() {
  python3 -c 'import sys, urllib.request
r = urllib.request.Request(sys.argv[1], data=b"{\"model\":\"gpt-4o-mini\",\"messages\":[]}", headers={"content-type": "application/json", "authorization": "Bearer sk-x"})
urllib.request.urlopen(r, timeout=2)' "$1"
}

DIR=$(mktemp -d /tmp/steer-bench-proxy.XXXXXX)
PIDS=()
cleanup() {
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do stop_pid "${PIDS[i]}"; done
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

if [ -z "${NO_LITELLM:-}" ] && ! [ -x "$VENV/bin/litellm" ]; then
  log "installing litellm[proxy] into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'litellm[proxy]'
fi

if [ -z "${NO_BUILD:-}" ]; then
  log "building (release)"
  cargo build --release -q -p steer-cli
  cargo build --release -q -p steer-proxy --example bench_proxy
fi
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BENCH=$TARGET_DIR/release/examples/bench_proxy
STEER=$TARGET_DIR/release/steer

UP_PORT=$(free_port)
"$BENCH" upstream --listen "127.0.0.1:$UP_PORT" 2>"$DIR/upstream.log" &
UP_PID=$!
PIDS+=($UP_PID)
wait_for upstream 10 posts "http://127.0.0.1:$UP_PORT/v1/chat/completions"

FLOOR_PORT=$(free_port)
"$BENCH" passthrough --listen "127.0.0.1:$FLOOR_PORT" --upstream "http://127.0.0.1:$UP_PORT" 2>"$DIR/floor.log" &
FLOOR_PID=$!
PIDS+=($FLOOR_PID)
wait_for floor 10 posts "http://127.0.0.1:$FLOOR_PORT/v1/chat/completions"

STEER_PORT=$(free_port)
OPENAI_BASE_URL="http://127.0.0.1:$UP_PORT/v1" "$STEER" proxy --listen "127.0.0.1:$STEER_PORT" \
  --db "$DIR/steer.db" >"$DIR/steer.log" 2>&1 &
STEER_PID=$!
PIDS+=($STEER_PID)
wait_for steer-proxy 10 ready "http://127.0.0.1:$STEER_PORT/healthz"

TARGETS=("direct=http://127.0.0.1:$UP_PORT/v1/chat/completions" "floor=http://127.0.0.1:$FLOOR_PORT/v1/chat/completions" "steer=http://127.0.0.1:$STEER_PORT/v1/chat/completions")
if [ -z "${NO_LITELLM:-}" ]; then
  LITELLM_PORT=$(free_port)
  cat >"$DIR/litellm.yaml" <<EOF
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: http://127.0.0.1:$UP_PORT/v1
      api_key: sk-bench
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:$UP_PORT/v1
      api_key: sk-bench
litellm_settings:
  telemetry: false
general_settings:
  master_key: sk-bench-0123456789   # the key the load generator presents
EOF
  LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR "$VENV/bin/litellm" --config "$DIR/litellm.yaml" \
    --host 127.0.0.1 --port "$LITELLM_PORT" >"$DIR/litellm.log" 2>&1 &
  PIDS+=($!)
  if ! wait_for litellm 120 ready "http://127.0.0.1:$LITELLM_PORT/health/liveliness"; then
    tail -n 30 "$DIR/litellm.log" >&2
    exit 1
  fi
  TARGETS+=("litellm=http://127.0.0.1:$LITELLM_PORT/v1/chat/completions")
  LITELLM_VERSION=$("$VENV/bin/pip" show litellm 2>/dev/null | awk '/^Version:/ {print $2}')
fi

RESULTS="$DIR/results.jsonl"
: >"$RESULTS"
# CPU time (user + system, clock ticks) a process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # label kind model [--stream]
  local label=$1 kind=$2 model=$3; shift 3
  local url=${label#*=}
  log "$kind: ${label%%=*}"
  local p0 u0 pid=$STEER_PID
  if [ "${label%%=*}" = floor ]; then pid=$FLOOR_PID; fi
  p0=$(ticks "$pid"); u0=$(ticks "$UP_PID")
  # The load generator's CPU seconds (user + system) go to $DIR/load_cpu.
  python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[2:], check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(str(r.ru_utime + r.ru_stime))' "$DIR/load_cpu" \
    "$BENCH" load --url "$url" --model "$model" --concurrency "$CONCURRENCY" \
    --seconds "$SECS" --warmup "$WARMUP" --label "${label%%=*}:$kind" "$@" | tee -a "$RESULTS"
  # Each process's own cost: CPU of the proxy, the upstream and the load
  # generator during the run (warm-up included).
  echo "{\"cpu\": \"${label%%=*}:$kind\", \"proxy_ticks\": $(( $(ticks "$pid") - p0 )), \"upstream_ticks\": $(( $(ticks "$UP_PID") - u0 )), \"load_s\": $(cat "$DIR/load_cpu")}" >>"$DIR/cpu.jsonl"
}
for t in "${TARGETS[@]}"; do run "$t" latency gpt-4o; done
for t in "${TARGETS[@]}"; do run "$t" ttft gpt-4o --stream; done
for t in "${TARGETS[@]}"; do run "$t" throughput gpt-4o-mini; done

STEER_RSS=$(awk '/VmRSS/ {print $2}' "/proc/$STEER_PID/status")
STEER_HWM=$(awk '/VmHWM/ {print $2}' "/proc/$STEER_PID/status")

# The proxy's own records: one per call made through it.
stop_pid "$STEER_PID"
STEER_ROWS=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from llm_metrics").fetchone()[0])' "$DIR/steer.db")

python3 - "$RESULTS" "$STEER_ROWS" "$STEER_RSS" "$STEER_HWM" "${LITELLM_VERSION:-}" "$DIR/cpu.jsonl" "$(getconf CLK_TCK)" "$WARMUP" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cpu = {c["cpu"]: c for c in (json.loads(l) for l in open(sys.argv[6]))}
tck, warm = int(sys.argv[7]), float(sys.argv[8])
r = {x["label"]: x for x in rows}
steer_rows, rss, hwm, llv = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
targets = [t for t in ("floor", "steer", "litellm") if f"{t}:latency" in r]
def f(v): return f"{v:.2f}"
print(f"\n## steer proxy benchmark ({rows[0]['concurrency']} connections, {rows[0]['seconds']:.0f} s per measurement)\n")
print("| measurement | direct | " + " | ".join(targets) + " |")
print("|---|---|" + "---|" * len(targets))
for kind, key, pcts in (("latency", "latency_ms", ("p50", "p99")), ("ttft", "ttft_ms", ("p50", "p99"))):
    for p in pcts:
        d = r[f"direct:{kind}"][key][p]
        cells = [f"{f(r[f'{t}:{kind}'][key][p])} (+{f(r[f'{t}:{kind}'][key][p] - d)})" for t in targets]
        print(f"| {kind} {p}, ms (added) | {f(d)} | " + " | ".join(cells) + " |")
d = r["direct:throughput"]["calls_per_s"]
cells = [f"{r[f'{t}:throughput']['calls_per_s']:.0f} ({100 * r[f'{t}:throughput']['calls_per_s'] / d:.0f}%)" for t in targets]
print(f"| throughput, calls/s (of direct) | {d:.0f} | " + " | ".join(cells) + " |")
errs = {t: sum(r[f"{t}:{k}"]["errors"] for k in ("latency", "ttft", "throughput")) for t in ["direct"] + targets}
print(f"\nerrors: {errs}")
# CPU per call of each process (calls during warm-up counted at the measured rate).
per_call = {}
for t in ["direct"] + targets:
    for kind in ("throughput", "ttft"):
        c, x = cpu.get(f"{t}:{kind}"), r[f"{t}:{kind}"]
        if not c:
            continue
        n = x["calls"] * (x["seconds"] + warm) / x["seconds"]
        proxy = 1e6 * c["proxy_ticks"] / tck / n if t in ("steer", "floor") else 0.0
        up, load = 1e6 * c["upstream_ticks"] / tck / n, 1e6 * c["load_s"] / n
        per_call[(t, kind)] = (proxy, up, load)
        print(f"CPU per call, {t}:{kind}: " + (f"proxy {proxy:.0f} us, " if t in ("steer", "floor") else "") + f"upstream {up:.0f} us, load generator {load:.0f} us")
if ("direct", "throughput") in per_call and ("steer", "throughput") in per_call:
    _, du, dl = per_call[("direct", "throughput")]
    p, su, sl = per_call[("steer", "throughput")]
    print(f"throughput bound on a fixed CPU budget: direct costs {du + dl:.0f} us of CPU per call, through the proxy {p + su + sl:.0f} us: at most {100 * (du + dl) / (p + su + sl):.0f}% of direct")
if "floor" in targets:
    fl, st = r["floor:throughput"]["calls_per_s"], r["steer:throughput"]["calls_per_s"]
    print(f"steer / floor (bare pass-through on the same stack): throughput {100 * st / fl:.0f}%")
    for kind, key in (("latency", "latency_ms"), ("ttft", "ttft_ms")):
        for p in ("p50", "p99"):
            d = r[f"direct:{kind}"][key][p]
            print(f"added {kind} {p}: floor {r[f'floor:{kind}'][key][p] - d:+.2f} ms, steer {r[f'steer:{kind}'][key][p] - d:+.2f} ms")
calls = sum(r[f"steer:{k}"]["calls"] for k in ("latency", "ttft", "throughput"))
print(f"steer proxy: {steer_rows} records in its store for {calls} measured calls (+ warm-up calls); RSS {rss // 1024} MiB at the end, peak {hwm // 1024} MiB")
if "litellm" in targets:
    print(f"litellm {llv}")
    for kind, key in (("latency", "latency_ms"), ("ttft", "ttft_ms")):
        for p in ("p50", "p99"):
            d = r[f"direct:{kind}"][key][p]
            s = r[f"steer:{kind}"][key][p] - d
            l = r[f"litellm:{kind}"][key][p] - d
            if s > 0.01:
                print(f"added {kind} {p}: litellm / steer = {l / s:.0f}x")
            else:
                print(f"added {kind} {p}: steer's within noise ({s:+.2f} ms), litellm's {l:+.2f} ms")
EOF
