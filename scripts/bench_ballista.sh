#!/usr/bin/env bash
# Distributed SQL benchmark (docs/benchmarks.md, "Distributed SQL"): the same
# three queries over one store, embedded against a Ballista cluster of one and
# of two executors (all processes on this machine).
#   scripts/bench_ballista.sh WORKDIR [NS] [RUNS]
# WORKDIR holds a data directory `d` with namespace NS (default b), e.g. the
# one scripts/bench_erase.sh builds (10M entries). Prints one line per query
# and mode: the median wall time of RUNS runs through HTTP.
set -euo pipefail
WORK=$1
NS=${2:-b}
RUNS=${3:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/tracevault
[ -x "$BIN" ] || BIN=$ROOT/target/debug/tracevault
cd "$WORK"
PORT=18493
SCHED=18495
URL=http://127.0.0.1:$PORT
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
base_cfg() {
  printf '[log]\ncompact_interval_ms = 0\n'
  printf '[query]\nmax_scan_rows = 100000000\nmax_result_rows = 1000000\nmax_result_bytes = 1073741824\ntimeout_s = 3600\nisolation = "thread"\n'
}
start_server() {
  "$BIN" serve --data d --listen 127.0.0.1:$PORT --config "$1" > serve.log 2>&1 &
  SP=$!
  for _ in $(seq 6000); do grep -q "listening on" serve.log && return; sleep 0.1; done
  echo "server did not start"; cat serve.log; exit 1
}
stop_server() { kill -INT "$SP"; wait "$SP" || true; }
ADMIN=$("$BIN" token issue --data d --role admin --namespace '*' --sub bench-admin --ttl 1d)
READER=$("$BIN" token issue --data d --role reader --namespace "$NS" --sub bench-reader --ttl 1d --from 1970-01-01T00:00:00Z)
run() { # label
  local label=$1
  SESSION=$(python3 "$ROOT/scripts/bench_ballista_q.py" "$URL" "$ADMIN" "SELECT session_id FROM traces WHERE ns = '$NS' AND idx = 12345" 1 | sed -n 's/^rows //p')
  for q in \
    "admin|full-scan aggregate|SELECT kind, count(*), sum(length(content)) FROM traces WHERE ns = '$NS' GROUP BY kind" \
    "admin|one-session lookup|SELECT idx, kind FROM traces WHERE ns = '$NS' AND session_id = '$SESSION' ORDER BY idx" \
    "reader|masked content scan|SELECT count(*) FROM traces WHERE content LIKE '%@%'"; do
    IFS='|' read -r who name sql <<<"$q"
    tok=$ADMIN; [ "$who" = reader ] && tok=$READER
    echo "$label | $name | $(python3 "$ROOT/scripts/bench_ballista_q.py" "$URL" "$tok" "$sql" "$RUNS")"
  done
}
base_cfg > embedded.toml
start_server embedded.toml
run embedded
stop_server
"$BIN" ballista scheduler --listen 127.0.0.1:$SCHED > sched.log 2>&1 &
PIDS+=($!)
sleep 2
for n in 1 2; do
  port=$((18500 + 10 * n))
  "$BIN" ballista executor --scheduler 127.0.0.1:$SCHED --listen 127.0.0.1:$port --data d --work-dir "exec$n" --tasks 2 > "exec$n.log" 2>&1 &
  PIDS+=($!)
  sleep 3
  { base_cfg; printf 'engine = "ballista"\nballista_scheduler = "df://127.0.0.1:%s"\n' $SCHED; } > ballista.toml
  start_server ballista.toml
  run "ballista, $n executor(s)"
  # How the cluster cut the full-scan aggregate: EXPLAIN ANALYZE (admins),
  # one row per stage; here each stage's first lines.
  EXPLAIN_PLAN=1 python3 "$ROOT/scripts/bench_ballista_q.py" "$URL" "$ADMIN" \
    "EXPLAIN ANALYZE SELECT kind, count(*), sum(length(content)) FROM traces WHERE ns = '$NS' GROUP BY kind" 1
  stop_server
done
