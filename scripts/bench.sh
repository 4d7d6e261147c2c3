#!/usr/bin/env bash
# Reproduces BENCHMARKS.md on this machine: builds the release binary, then for each scenario
# starts the system under test pinned to CPU 0 and the load generator pinned to CPU 1
# (taskset), and prints one JSON object per run (also saved to bench-results/results.jsonl).
#
#   scripts/bench.sh              # every scenario (a few minutes once the scale seed is cached)
#   BENCH_SCENARIOS=fanout,scale scripts/bench.sh    # a subset of ingest,wake,fanout,scale
#   BENCH_SECONDS=2 scripts/bench.sh
#   BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test scripts/bench.sh   (default)
#   BENCH_SUBSCRIBERS=10000 BENCH_CHECKPOINTS=1000000 BENCH_PENDING=100000 BENCH_EXECUTIONS=100000
#   BENCH_PIN_POSTGRES=0 scripts/bench.sh   (leave a local PostgreSQL server's CPU affinity alone)
#
# The scale seed (SQLite file and PostgreSQL database) is kept between runs in
# bench-results/scale-cache and the database hitlhook_scale_<checkpoints>_<pending>_<executions>;
# delete them to seed again.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${BENCH_SECONDS:-10}
pg_admin=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
scenarios=${BENCH_SCENARIOS:-ingest,wake,fanout,scale}
subscribers=${BENCH_SUBSCRIBERS:-10000}
checkpoints=${BENCH_CHECKPOINTS:-1000000}
pending=${BENCH_PENDING:-100000}
executions=${BENCH_EXECUTIONS:-100000}
want() { [[ ",$scenarios," == *",$1,"* ]]; }
# Fan-out opens one socket per subscriber on each side: up to the hard limit on open files.
ulimit -n "$(ulimit -Hn)"
export WEBHOOK_SECRET=bench-secret WEBHOOK_API_KEY=bench-admin-key
bin=target/release/hitlhook
out=bench-results
mkdir -p "$out"
: > "$out/results.jsonl"

pin_server="taskset -c 0"
pin_load="taskset -c 1"
command -v taskset >/dev/null || { pin_server=""; pin_load=""; echo "taskset missing: running unpinned" >&2; }

# PostgreSQL is part of the system under test: while hitlhook runs on it, the local PostgreSQL
# server's processes (the postmaster first, so new backends inherit it) share CPU 0 with
# hitlhook, as SQLite's work does inside hitlhook's process. Unpinned, its backends also ran
# on the load generator's core and its figures moved by 3 x between runs. Put back at exit.
# BENCH_PIN_POSTGRES=0 leaves it alone (a remote or shared server).
pg_pids() { pgrep -x postgres || true; }
pin_postgres() {
  [ "${BENCH_PIN_POSTGRES:-1}" = 1 ] && [ -n "$pin_server" ] || return 0
  for p in $(pg_pids); do taskset -a -p -c 0 "$p" >/dev/null 2>&1 || true; done
}
unpin_postgres() {
  [ "${BENCH_PIN_POSTGRES:-1}" = 1 ] && [ -n "$pin_server" ] || return 0
  for p in $(pg_pids); do taskset -a -p -c "0-$(( $(nproc --all) - 1 ))" "$p" >/dev/null 2>&1 || true; done
}

echo "==> building the release binary" >&2
cargo build --release --bin hitlhook >&2

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; unpin_postgres; rm -rf "$work"; }
trap cleanup EXIT

# start NAME ARGS... : starts a process pinned to CPU 0, waits for its "listening on" line,
# sets $url and $pid.
start() {
  local name=$1; shift
  # Created here, not by the background job's redirection: the first read below may come first.
  : > "$work/$name.out"
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


if want ingest; then
echo "==> ingest: ceiling, SQLite, PostgreSQL at 1, 32, 256 connections" >&2
for conns in 1 32 256; do
  start ceiling "$bin" bench ceiling --bind 127.0.0.1:0
  ingest ceiling "$conns"
  stop

  start sqlite "$bin" serve --bind 127.0.0.1:0 --data-dir "$work/sqlite-$conns"
  ingest sqlite "$conns"
  stop

  db="hitlhook_bench_$$_$conns"
  psql "$pg_admin" -qc "create database $db" >/dev/null
  pin_postgres
  start postgres "$bin" serve --bind 127.0.0.1:0 --data-dir "$work/pg-$conns" --database-url "${pg_admin%/*}/$db"
  ingest postgres "$conns"
  stop
  unpin_postgres
  psql "$pg_admin" -qc "drop database $db with (force)" >/dev/null
done
fi

compact() { python3 -c "import json,sys; d=json.load(sys.stdin); d.update(dict(a.split('=',1) for a in sys.argv[1:])); print(json.dumps(d))" "$@"; }

if want wake; then
echo "==> idle RSS and decision -> wake (SQLite)" >&2
start sqlite "$bin" serve --bind 127.0.0.1:0 --data-dir "$work/wake"
sleep 1
echo "{\"scenario\": \"idle_rss\", \"target\": \"sqlite\", \"rss_kb\": $(rss_kb "$pid")}" | record
$pin_load "$bin" bench wake --url "$url" --waiters 500 | compact | record
stop
fi

if want fanout; then
echo "==> fan-out: $subscribers WebSocket subscribers (SQLite)" >&2
start sqlite "$bin" serve --bind 127.0.0.1:0 --data-dir "$work/fanout"
sleep 1
$pin_load "$bin" bench fanout --url "$url" --subscribers "$subscribers" --rounds 10 --server-pid "$pid" \
  | compact target=sqlite | record
stop
fi

if want scale; then
cache="$out/scale-cache/sqlite-$checkpoints-$pending-$executions"
if [ ! -f "$cache/seed.json" ]; then
  echo "==> scale: seeding SQLite with $checkpoints checkpoints ($pending pending) into $cache" >&2
  rm -rf "$cache"; mkdir -p "$cache"
  "$bin" bench seed --data-dir "$cache" --checkpoints "$checkpoints" --pending "$pending" \
    --executions "$executions" > "$cache/seed.tmp" && mv "$cache/seed.tmp" "$cache/seed.json"
else
  echo "==> scale: reusing the SQLite seed in $cache" >&2
fi
compact target=sqlite < "$cache/seed.json" | record
start sqlite "$bin" serve --bind 127.0.0.1:0 --data-dir "$cache"
$pin_load "$bin" bench scale --url "$url" --checkpoints "$checkpoints" --executions "$executions" \
  | compact target=sqlite | record
stop

pgdb="hitlhook_scale_${checkpoints}_${pending}_${executions}"
pgurl="${pg_admin%/*}/$pgdb"
seeded=$(psql "$pgurl" -tAc "select count(*) from checkpoints" 2>/dev/null || true)
if [ "$seeded" != "$checkpoints" ] || [ ! -f "$out/scale-cache/$pgdb.json" ]; then
  echo "==> scale: seeding PostgreSQL database $pgdb" >&2
  psql "$pg_admin" -qc "drop database if exists $pgdb with (force)" >/dev/null
  psql "$pg_admin" -qc "create database $pgdb" >/dev/null
  mkdir -p "$out/scale-cache"
  "$bin" bench seed --database-url "$pgurl" --checkpoints "$checkpoints" --pending "$pending" \
    --executions "$executions" > "$out/scale-cache/$pgdb.json"
else
  echo "==> scale: reusing the PostgreSQL database $pgdb" >&2
fi
compact target=postgres < "$out/scale-cache/$pgdb.json" | record
pin_postgres
start postgres "$bin" serve --bind 127.0.0.1:0 --data-dir "$work/pg-scale" --database-url "$pgurl"
$pin_load "$bin" bench scale --url "$url" --checkpoints "$checkpoints" --executions "$executions" \
  | compact target=postgres | record
stop
unpin_postgres
fi

echo "==> results in $out/results.jsonl" >&2
