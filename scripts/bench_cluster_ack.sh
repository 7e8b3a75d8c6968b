#!/usr/bin/env bash
# Ingest with receipts after the local fsync (single-node default) against
# receipts only once the events are in the store (`[cluster] enabled`), same
# machine, same store (the local file system unless STORE is set), same load:
# `bench ingest` with 256-byte events. Prints the load generator's summary
# per mode and flush interval.
#
#   scripts/bench_cluster_ack.sh [EVENTS] [BIN]
set -euo pipefail
EVENTS=${1:-200000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${2:-$ROOT/target/release/tracevault}
[ -x "$BIN" ] || BIN=$ROOT/target/debug/tracevault
PORT=18492
run() {
  local label=$1 cfg=$2 W
  W=$(mktemp -d)
  printf '%b' "$cfg" > "$W/config.toml"
  "$BIN" serve --data "$W/d" --listen 127.0.0.1:$PORT --config "$W/config.toml" ${STORE:+--store "$STORE"} > "$W/serve.log" 2>&1 &
  local SP=$!
  for _ in $(seq 600); do grep -q "listening on" "$W/serve.log" && break; sleep 0.1; done
  local TOK
  TOK=$("$BIN" token issue --data "$W/d" --role writer --namespace b --sub bench --ttl 1d)
  echo "== $label"
  "$BIN" bench ingest --url http://127.0.0.1:$PORT --token "$TOK" --ns b --events "$EVENTS" --batch 1000 --concurrency 8 --size 256 | tail -1
  kill -INT $SP; wait $SP || true
  rm -rf "$W"
}
for flush in 500 100; do
  run "receipt after the local fsync, flush_interval_ms = $flush" "[log]\nflush_interval_ms = $flush\n"
  run "receipt once in the store ([cluster] enabled), flush_interval_ms = $flush" "[log]\nflush_interval_ms = $flush\n[cluster]\nenabled = true\n"
done
