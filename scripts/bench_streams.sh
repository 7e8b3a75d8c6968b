#!/usr/bin/env bash
# Issue 19's session-stream target (docs/benchmarks.md): one session as fast
# as the load generator goes, then 256 sessions at 20 lines/s each, against a
# fresh release server (`[limits] max_streams_per_token = 256` and
# `writer_events_per_s = 0`, so that one token drives every stream). Prints
# the load generator's summary of each run and the segments the log holds
# afterwards (a stream's lines must be merged into few segments, not one per
# network read).
#   scripts/bench_streams.sh WORKDIR [ONE_SESSION_LINES] [MANY_SESSIONS_LINES]
set -euo pipefail
WORK=$1
ONE=${2:-100000}
MANY=${3:-102400}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/tracevault}
[ -x "$BIN" ] || { echo "build the release binary first: cargo build --release --workspace --locked" >&2; exit 1; }
mkdir -p "$WORK"
# A new store under a new name each time (see scripts/bench_otlp.sh).
DATA=$WORK/tv-$(date +%s)
printf '[limits]\nmax_streams_per_token = 256\nwriter_events_per_s = 0\n' > "$WORK/streams.toml"
PORT=18534
. "$ROOT/scripts/serve_bg.sh"
CONFIG=$WORK/streams.toml serve_bg "$BIN" "$DATA" $PORT "$WORK/serve.log"
T=$("$BIN" token issue --data "$DATA" --role writer --namespace s1,s256 --sub bench)
echo "one session, $ONE lines: $("$BIN" bench ingest --url http://127.0.0.1:$PORT --token "$T" \
  --ns s1 --format stream --sessions 1 --events "$ONE" --size 256 | tail -1)"
echo "256 sessions x 20 lines/s, $MANY lines: $("$BIN" bench ingest --url http://127.0.0.1:$PORT \
  --token "$T" --ns s256 --format stream --sessions 256 --rate 5120 --events "$MANY" --size 256 | tail -1)"
sleep 3
kill -INT $SP; wait $SP || true
trap - EXIT
for ns in s1 s256; do
  echo "$ns: $(ls "$DATA/store/ns/$ns/segments" | wc -l) segments"
done
"$BIN" verify --data "$DATA" > "$WORK/verify.txt" 2>&1 && echo "verify: $(tail -1 "$WORK/verify.txt")"
