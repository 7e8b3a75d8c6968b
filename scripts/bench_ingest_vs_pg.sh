#!/usr/bin/env bash
# Issue 19's side-by-side ingest comparison (docs/benchmarks.md): the same load
# against tracevault (native JSON, durable acks, the 2 s checkpoint promise)
# and against PostgreSQL 15 (scripts/bench_pg.sh: fsync and synchronous_commit
# on, COPY batches), one after the other in one sitting on this machine.
#   scripts/bench_ingest_vs_pg.sh WORKDIR [EVENTS] [CLIENTS] [BATCH] [SIZE]
# Afterwards the namespace's checkpoint is checked to cover every acknowledged
# event (`bench ingest` waits for it and reports the lag). CONFIG=FILE starts
# tracevault with that config file.
set -euo pipefail
WORK=$1
EVENTS=${2:-1500000}
CLIENTS=${3:-8}
BATCH=${4:-500}
SIZE=${5:-1024}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/tracevault
[ -x "$BIN" ] || { echo "build the release binary first: cargo build --release --workspace --locked" >&2; exit 1; }
mkdir -p "$WORK"
# Nothing is deleted between the two runs, and an earlier run's files are
# deleted only at the end: on ext4 without a journal, inodes freed in the
# last 30 s are skipped one by one when new files are created, which slowed
# the next run's tile and segment writes by a fifth (docs/benchmarks.md).
rm -rf "$WORK/tv"
PORT=18531
. "$ROOT/scripts/serve_bg.sh"
serve_bg "$BIN" "$WORK/tv" $PORT "$WORK/serve.log"
T=$("$BIN" token issue --data "$WORK/tv" --role writer --namespace bench --sub bench)
echo "tracevault: $("$BIN" bench ingest --url http://127.0.0.1:$PORT --token "$T" --ns bench \
  --events "$EVENTS" --batch "$BATCH" --concurrency "$CLIENTS" --size "$SIZE")"
kill -INT $SP; wait $SP || true
"$BIN" verify --data "$WORK/tv" > "$WORK/verify.txt" 2>&1 && echo "verify: $(tail -1 "$WORK/verify.txt")"
# PostgreSQL must not pay for writing back tracevault's page cache.
sync
"$ROOT/scripts/bench_pg.sh" "$WORK/pg" "$EVENTS" "$CLIENTS" "$BATCH" "$SIZE"
rm -rf "$WORK/tv"
