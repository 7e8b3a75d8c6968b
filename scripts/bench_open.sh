#!/usr/bin/env bash
# Opening a namespace at growing log sizes (issue 14): one store grown
# through a real server (`bench ingest`, 256-byte events, 64 sessions, no
# event_id), and at each size the server is stopped cleanly and started
# again; the first append opens the namespace (its WAL is empty, so it is
# opened on first use, not at start-up). Prints, per size: the open (the
# first append's latency), the server's resident memory after it, and 300
# random inclusion proofs from the writer (p50/p99).
#
#   scripts/bench_open.sh "1000000 10000000 50000000" [BIN] [WORKDIR]
#
# FORMAT=otlp-proto sends OTLP spans instead (every event then has an
# event_id: the worst case for the open, which decodes the entries of the
# event_id window). With FULL_MAX=N, sizes up to N are also opened without their snapshot
# (removed first), as a store written before snapshots is: every segment
# read. Sizes are cumulative targets. BIN defaults to target/release/tracevault,
# else target/debug. The data directory is kept in WORKDIR (default a new
# temporary directory) for scripts/bench_verify_since.sh-style runs.
set -euo pipefail
SIZES=${1:-"1000000 10000000"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${2:-$ROOT/target/release/tracevault}
[ -x "$BIN" ] || BIN=$ROOT/target/debug/tracevault
WORK=${3:-$(mktemp -d)}
mkdir -p "$WORK"
cd "$WORK"
PORT=18490
URL=http://127.0.0.1:$PORT
start() {
  "$BIN" serve --data d --listen 127.0.0.1:$PORT > serve.log 2>&1 &
  SP=$!
  for _ in $(seq 6000); do grep -q "listening on" serve.log && return; sleep 0.1; done
  echo "server did not start"; exit 1
}
stop() { kill -INT "$SP"; wait "$SP" || true; }
# Starts the server and appends one event: start-up opens a namespace with
# WAL data at once, others on first use, so the time from launch to the
# first append answered covers both. Prints it with LABEL, then the
# server's own lines about the open and its resident memory.
open_once() {
  local T0 T1
  T0=$(date +%s.%N)
  start
  curl -s -o /dev/null -H "Authorization: Bearer $TOK" -H 'content-type: application/json' \
    -d '{"events":[{"session_id":"x","kind":"output","content":"hi"}]}' $URL/v1/logs/b/events
  T1=$(date +%s.%N)
  have=$((have + 1))
  echo "$1: launch to first append answered: $(python3 -c "print(round($T1 - $T0, 2))") s"
  sed 's/\x1b\[[0-9;]*m//g' serve.log | grep -E "namespace open for writing|opened from the checkpoint|building the tiles|snapshot written" | cut -c1-220 || true
  echo "server RSS after the open: $(grep VmRSS /proc/$SP/status | awk '{print $2, $3}')"
}
trap 'kill "$SP" 2>/dev/null || true; echo "data directory: $WORK/d"' EXIT
start
TOK=$("$BIN" token issue --data d --role writer --namespace b --sub bench --ttl 7d)
RTOK=$("$BIN" token issue --data d --role reader --namespace b --sub r --ttl 7d --from 2000-01-01T00:00:00Z)
have=$(sed -n 2p d/store/ns/b/checkpoint 2>/dev/null || echo 0)
for target in $SIZES; do
  add=$((target - have))
  if [ "$add" -gt 0 ]; then
    "$BIN" bench ingest --url $URL --token "$TOK" --ns b --events "$add" --batch 1000 --concurrency 4 --size 256 --format "${FORMAT:-api}" | tail -1
  fi
  stop
  have=$(sed -n 2p d/store/ns/b/checkpoint)
  echo "== size $have: store $(du -sh d/store | cut -f1), segments $(ls d/store/ns/b/segments | wc -l), checkpoints $(ls d/store/ns/b/checkpoints | wc -l)"
  open_once "open"
  python3 - "$RTOK" $PORT <<'PY'
import sys, time, random, urllib.request
tok, port = sys.argv[1], sys.argv[2]
def get(p):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{p}", headers={"Authorization": "Bearer " + tok})
    return urllib.request.urlopen(r).read()
time.sleep(1.5)
size = int(get("/v1/logs/b/checkpoint").decode().split("\n")[1])
random.seed(1); t = []
for _ in range(300):
    i = random.randrange(size); s = time.perf_counter()
    get(f"/v1/logs/b/proof/inclusion?index={i}&size={size}"); t.append(time.perf_counter() - s)
t.sort(); print(f"proofs at size {size}: p50 {t[150]*1000:.2f} ms, p99 {t[297]*1000:.2f} ms")
PY
  echo "server RSS after the proofs: $(grep VmRSS /proc/$SP/status | awk '{print $2, $3}')"
  if [ "$have" -le "${FULL_MAX:-0}" ]; then
    # The same store opened as one written before snapshots: every segment
    # read (and the snapshot written again).
    stop
    rm -rf d/store/ns/b/state
    open_once "without a snapshot (full read)"
  fi
done
stop
