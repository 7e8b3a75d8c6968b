#!/usr/bin/env bash
# Issue 19's six targets in one sitting, on the release build, one after the
# other (docs/benchmarks.md, "Every target in one sitting"): what the issue's
# "How it will be checked" asks for, in one command.
#   scripts/bench_targets.sh WORKDIR [ROUNDS]
# 0. the SHA-256 bound (`openssl speed -evp sha256`, per core; times the cores)
# 1. native JSON against PostgreSQL 15, 1.5M events (scripts/bench_ingest_vs_pg.sh), ROUNDS times
# 2. OTLP protobuf GenAI spans, 600k events (scripts/bench_otlp.sh), ROUNDS runs
# 3. session streams: one session, then 256 at 20 lines/s (scripts/bench_streams.sh)
# 4. `verify --jobs 2` of a 2M-entry store (scripts/bench_verify.sh), ROUNDS runs
# 5. one-session lookups at 10M entries through HTTP (scripts/bench_lookup.sh),
#    worker processes (the default) and in-process threads
# 6. receipts once in the store against single-node (scripts/bench_cluster_ack.sh)
# The 2M- and 10M-entry stores are written on the first run (about 15 and
# 90 s of ingest, 0.65 and 3.3 GB) and kept in WORKDIR for the next. Each
# step's output goes to WORKDIR/tN.log as well as to the terminal.
set -euo pipefail
WORK=$1
ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/tracevault
[ -x "$BIN" ] || { echo "build the release binary first: cargo build --release --workspace --locked" >&2; exit 1; }
mkdir -p "$WORK"
S=$ROOT/scripts
step() { echo "== $1 ($(date -u +%H:%M:%S))"; }

step "0. SHA-256 bound, $(nproc) cores"
openssl speed -evp sha256 -seconds 2 2>/dev/null | tail -2 | tee "$WORK/t0.log"

step "1. native JSON, 1.5M x 1 KiB, batches of 500, 8 clients, against PostgreSQL 15"
for r in $(seq 1 "$ROUNDS"); do
  "$S/bench_ingest_vs_pg.sh" "$WORK/t1" 1500000 8 500 1024
done 2>&1 | tee "$WORK/t1.log"

step "2. OTLP protobuf GenAI spans, 600k events"
"$S/bench_otlp.sh" "$WORK/t2" 600000 "$ROUNDS" otlp-proto 2>&1 | tee "$WORK/t2.log"

step "3. session streams"
"$S/bench_streams.sh" "$WORK/t3" 100000 102400 2>&1 | tee "$WORK/t3.log"

step "4. verify of a 2M-entry store"
"$S/bench_verify.sh" "$WORK/t4" 2000000 "$ROUNDS" 2 2>&1 | tee "$WORK/t4.log"

step "5. one-session lookups at 10M entries"
if [ ! -d "$WORK/t5/d" ]; then
  mkdir -p "$WORK/t5"
  . "$S/serve_bg.sh"
  serve_bg "$BIN" "$WORK/t5/d" 18535 "$WORK/t5/serve.log"
  T=$("$BIN" token issue --data "$WORK/t5/d" --role writer --namespace bench --sub bench --ttl 1d)
  "$BIN" bench ingest --url http://127.0.0.1:18535 --token "$T" --ns bench --events 10000000 \
    --batch 500 --concurrency 4 --size 1024 --session-events 100 | tail -1
  sleep 3
  kill -INT $SP; wait $SP || true
  trap - EXIT
fi
printf '[query]\nisolation = "process"\n' > "$WORK/t5/process.toml"
printf '[query]\nisolation = "thread"\n' > "$WORK/t5/thread.toml"
for mode in process thread; do
  echo "isolation = $mode: $(TRACEVAULT_BIN=$BIN "$S/bench_lookup.sh" "$WORK/t5/d" "$WORK/t5/$mode.toml" 15 | tr '\n' ' ')"
done 2>&1 | tee "$WORK/t5.log"

step "6. receipts once in the store ([cluster] enabled) against single-node"
"$S/bench_cluster_ack.sh" 300000 "$BIN" 2>&1 | tee "$WORK/t6.log"
step "done"
