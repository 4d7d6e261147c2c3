#!/usr/bin/env bash
# Paired ingest runs: compares hitlhook binaries on the same machine in the same minutes, so a
# change's effect is not lost in the machine's noise. Each round starts every binary in turn on
# a fresh SQLite data directory (CPU 0), drives it with `bench ingest` (CPU 1), stops it, and
# then measures the ceiling (`bench ceiling`) the same way. Prints one line per run:
#   LABEL EVENTS_PER_SEC P50_MS P99_MS ERRORS
#
#   scripts/bench-pair.sh ROUNDS CONNECTIONS LABEL=BINARY [LABEL=BINARY ...]
#   e.g. scripts/bench-pair.sh 3 32 before=/tmp/hitlhook-before after=target/release/hitlhook
#   BENCH_SECONDS=20 scripts/bench-pair.sh ...   (measured seconds per run; default 5)
set -euo pipefail
if [ $# -lt 3 ]; then sed -n '2,10p' "$0" >&2; exit 2; fi
rounds=$1; conns=$2; shift 2
secs=${BENCH_SECONDS:-5}
export WEBHOOK_SECRET=bench-pair-secret WEBHOOK_API_KEY=bench-pair-admin-key
load=$(echo "$1" | cut -d= -f2-)   # the first binary also drives the load
port=8191
summary() { python3 -c 'import json,sys; j=json.load(sys.stdin); l=j["latency"]; print(round(j["throughput_per_sec"]), l["p50_ms"], l["p99_ms"], j["errors"])'; }

# measure LABEL PORT COMMAND...: starts COMMAND on CPU 0, waits for its "listening on" line,
# drives it from CPU 1 and prints LABEL and the figures, then stops it.
measure() {
  local label=$1 port=$2; shift 2
  local out; out=$(mktemp)
  taskset -c 0 "$@" > "$out" 2>&1 &
  local pid=$!
  for _ in $(seq 1 200); do grep -q "listening on" "$out" && break; sleep 0.05; done
  grep -q "listening on" "$out" || { echo "$label did not start: $(cat "$out")" >&2; exit 1; }
  echo "$label $(taskset -c 1 "$load" bench ingest --url "http://127.0.0.1:$port" \
    --connections "$conns" --seconds "$secs" --mix checkpoint | summary)"
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  rm -f "$out"
}

for _ in $(seq 1 "$rounds"); do
  for spec in "$@"; do
    dir=$(mktemp -d)
    measure "${spec%%=*}" "$port" "${spec#*=}" serve --data-dir "$dir" --bind "127.0.0.1:$port"
    rm -rf "$dir"
  done
  measure ceiling "$((port + 1))" "$load" bench ceiling --bind "127.0.0.1:$((port + 1))"
done
