#!/usr/bin/env bash
# Full `verify` against `verify --since` after new entries (issue 14).
#
#   scripts/bench_verify_since.sh [EVENTS] [NEW] [BIN]
#
# Builds a store of EVENTS entries through a real server (`bench ingest`,
# 256-byte events), saves its checkpoint, adds NEW entries, stops the server,
# then runs a full `verify` and `verify --since` the saved checkpoint, each
# under /usr/bin/time (wall seconds, peak resident KB). Defaults: 300000,
# 10000, target/release/tracevault (falls back to target/debug). With KEEP=1
# the data directory is kept (for scripts/bench_open_and_proofs.sh).
set -euo pipefail
EVENTS=${1:-300000}
NEW=${2:-10000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${3:-$ROOT/target/release/tracevault}
[ -x "$BIN" ] || BIN=$ROOT/target/debug/tracevault
WORK=$(mktemp -d)
trap 'kill "$SP" 2>/dev/null || true; if [ -n "${KEEP:-}" ]; then echo "data directory kept: $WORK/d"; else rm -rf "$WORK"; fi' EXIT
cd "$WORK"
"$BIN" serve --data d --listen 127.0.0.1:18471 > serve.log 2>&1 &
SP=$!
for _ in $(seq 100); do grep -q "listening on" serve.log && break; sleep 0.1; done
TOK=$("$BIN" token issue --data d --role writer --namespace b --sub bench --ttl 7d)
RTOK=$("$BIN" token issue --data d --role reader --namespace b --sub r --ttl 7d --from 2000-01-01T00:00:00Z)
URL=http://127.0.0.1:18471
"$BIN" bench ingest --url $URL --token "$TOK" --ns b --events "$EVENTS" --batch 1000 --concurrency 4 --size 256
sleep 2
curl -sf -H "Authorization: Bearer $RTOK" $URL/v1/logs/b/checkpoint > old.checkpoint
"$BIN" bench ingest --url $URL --token "$TOK" --ns b --events "$NEW" --batch 1000 --concurrency 4 --size 256
sleep 2
kill -INT "$SP"; wait "$SP" || true
KEY=$(grep "log public key" serve.log | awk '{print $4}')
echo "tiles: $(find d/store/ns/b/tile -type f | wc -l), segments: $(ls d/store/ns/b/segments | wc -l)"
echo "== full verify"
/usr/bin/time -f "%e s wall, %M KB peak" "$BIN" verify --data d --key "$KEY"
echo "== verify --since (checkpoint at $EVENTS)"
/usr/bin/time -f "%e s wall, %M KB peak" "$BIN" verify --data d --key "$KEY" --since old.checkpoint
