#!/usr/bin/env bash
# Reproduces BENCHMARKS.md on this machine: builds the release binary, then for each scenario
# starts the system under test pinned to CPU 0 and the load generator pinned to CPU 1
# (taskset), and prints one JSON object per run (also saved to bench-results/results.jsonl).
#
#   scripts/bench.sh              # full run (about 3 minutes)
#   BENCH_SECONDS=2 scripts/bench.sh
#   BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test scripts/bench.sh   (default)
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${BENCH_SECONDS:-10}
pg_admin=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
export WEBHOOK_SECRET=bench-secret WEBHOOK_API_KEY=bench-admin-key
bin=target/release/hitlhook
out=bench-results
mkdir -p "$out"
: > "$out/results.jsonl"

pin_server="taskset -c 0"
pin_load="taskset -c 1"
command -v taskset >/dev/null || { pin_server=""; pin_load=""; echo "taskset missing: running unpinned" >&2; }

echo "==> building the release binary" >&2
cargo build --release --bin hitlhook >&2

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# start NAME ARGS... : starts a process pinned to CPU 0, waits for its "listening on" line,
# sets $url and $pid.
start() {
  local name=$1; shift
  $pin_server "$@" > "$work/$name.out" 2> "$work/$name.err" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1 200); do
    url=$(sed -n 's/^listening on //p' "$work/$name.out" | head -n 1)
    [ -n "$url" ] && return 0
    sleep 0.05
  done
  echo "$name did not start:" >&2; cat "$work/$name.err" >&2; exit 1
}
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

record() { tee -a "$out/results.jsonl"; }

ingest() { # label connections
  $pin_load "$bin" bench ingest --url "$url" --connections "$2" --seconds "$secs" --mix checkpoint \
    | python3 -c "import json,sys; d=json.load(sys.stdin); d['target']='$1'; print(json.dumps(d))" | record
}

for conns in 1 32 256; do
  start ceiling "$bin" bench ceiling --bind 127.0.0.1:0
  ingest ceiling "$conns"
  stop

  start sqlite "$bin" serve --bind 127.0.0.1:0 --data-dir "$work/sqlite-$conns"
  ingest sqlite "$conns"
  stop

  db="hitlhook_bench_$$_$conns"
  psql "$pg_admin" -qc "create database $db" >/dev/null
  start postgres "$bin" serve --bind 127.0.0.1:0 --data-dir "$work/pg-$conns" --database-url "${pg_admin%/*}/$db"
  ingest postgres "$conns"
  stop
  psql "$pg_admin" -qc "drop database $db with (force)" >/dev/null
done

start sqlite "$bin" serve --bind 127.0.0.1:0 --data-dir "$work/wake"
sleep 1
echo "{\"scenario\": \"idle_rss\", \"target\": \"sqlite\", \"rss_kb\": $(rss_kb "$pid")}" | record
$pin_load "$bin" bench wake --url "$url" --waiters 500 | python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)))" | record
stop

echo "==> results in $out/results.jsonl" >&2
