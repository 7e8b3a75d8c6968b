#!/usr/bin/env bash
# Issue 19's OTLP target (docs/benchmarks.md): GenAI spans as OTLP/HTTP
# protobuf (or JSON), 2 events per span, against a fresh server on the release
# build, RUNS runs one after the other, each into its own namespace.
#   scripts/bench_otlp.sh WORKDIR [EVENTS] [RUNS] [FORMAT]
# PERF=1 records a call-graph profile of the whole machine during the first
# run (PERF_ARGS, default -g: e.g. "--call-graph dwarf,16384 -F 499")
# (WORKDIR/perf.data; `perf report -i WORKDIR/perf.data --no-children
# --pid PID`, or `--comm seq-o1` for the namespace's sequencer). System-wide
# because `perf record -p` missed the sequencer thread, which the first
# request starts after perf has attached (a quarter of the server's CPU).
# CONFIG=FILE starts the server with that config file (e.g. `[log]
# segment_compression = "lz4"`).
# Each run also prints the server's CPU time for it (user + system): a second
# figure beside events/s (it drifts with the machine too; compare variants in
# interleaved rounds with scripts/bench_ab.sh).
set -euo pipefail
WORK=$1
EVENTS=${2:-600000}
RUNS=${3:-3}
FORMAT=${4:-otlp-proto}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/tracevault}
[ -x "$BIN" ] || { echo "build the release binary first: cargo build --release --workspace --locked" >&2; exit 1; }
mkdir -p "$WORK"
# A new store under a new name each time: deleting one right before a run
# slows file creation on ext4 without a journal (docs/benchmarks.md).
DATA=$WORK/tv-$(date +%s)
PORT=18532
. "$ROOT/scripts/serve_bg.sh"
serve_bg "$BIN" "$DATA" $PORT "$WORK/serve.log"
NS=$(seq -s, -f "o%g" 1 "$RUNS")
T=$("$BIN" token issue --data "$DATA" --role writer --namespace "$NS" --sub bench)
for r in $(seq 1 "$RUNS"); do
  if [ "$r" = 1 ] && [ "${PERF:-0}" = 1 ]; then
    echo "server pid $SP"
    perf record -a ${PERF_ARGS:--g} -o "$WORK/perf.data" 2>/dev/null &
    PP=$!
  fi
  C0=$(cpu_secs $SP)
  echo "run $r: $("$BIN" bench ingest --url http://127.0.0.1:$PORT --token "$T" --ns "o$r" \
    --events "$EVENTS" --batch 500 --concurrency 8 --size 1024 --format "$FORMAT")"
  if [ -n "${PP:-}" ]; then kill -INT $PP; wait $PP || true; PP=; fi
  sleep 3
  echo "run $r: server CPU $(awk -v a="$C0" -v b="$(cpu_secs $SP)" -v n="$EVENTS" 'BEGIN { printf "%.2f s, %.1f us per event", b - a, (b - a) * 1e6 / n }') (segments encoded and published included)"
done
kill -INT $SP; wait $SP || true
"$BIN" verify --data "$DATA" > "$WORK/verify.txt" 2>&1 && echo "verify: $(tail -1 "$WORK/verify.txt")"
