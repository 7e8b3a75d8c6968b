#!/usr/bin/env bash
# Erasing 100k entries from a large store (issue 16). One store grown through
# a real server (`bench ingest`, 256-byte events, 64 sessions, 4 writers),
# then the server is restarted (so its peak memory is the erasure's, not the
# ingest's) and two orders are requested by an admin, approved by an approver
# and performed by the server:
#   contiguous: 100k consecutive entries (idx range: few segments rewritten)
#   spread:     every (EVENTS/100k)-th entry over the whole log (every
#               segment rewritten): the cost of erasing a subject whose
#               sessions span the log.
# Prints, per order: the request (the selection, run as SQL and read back),
# approve to performed (the server's "erasure performed" line, with the
# segments rewritten), the server's resident memory before and its peak
# (VmHWM) after; then `verify` of the whole store.
#
#   scripts/bench_erase.sh EVENTS [BIN] [WORKDIR]
set -euo pipefail
EVENTS=${1:-10000000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${2:-$ROOT/target/release/tracevault}
[ -x "$BIN" ] || BIN=$ROOT/target/debug/tracevault
WORK=${3:-$(mktemp -d)}
mkdir -p "$WORK"
cd "$WORK"
PORT=18491
URL=http://127.0.0.1:$PORT
cat > config.toml <<CFG
[query]
max_scan_rows = 100000000
max_result_rows = 1000000
max_result_bytes = 1073741824
timeout_s = 3600
CFG
start() {
  "$BIN" serve --data d --listen 127.0.0.1:$PORT --config config.toml > serve.log 2>&1 &
  SP=$!
  for _ in $(seq 6000); do grep -q "listening on" serve.log && return; sleep 0.1; done
  echo "server did not start"; exit 1
}
stop() { kill -INT "$SP"; wait "$SP" || true; }
trap 'kill "$SP" 2>/dev/null || true; echo "data directory: $WORK/d"' EXIT
start
TOK=$("$BIN" token issue --data d --role writer --namespace b --sub bench --ttl 7d)
have=$(sed -n 2p d/store/ns/b/checkpoint 2>/dev/null || echo 0)
if [ "$have" -lt "$EVENTS" ]; then
  "$BIN" bench ingest --url $URL --token "$TOK" --ns b --events $((EVENTS - have)) --batch 1000 --concurrency 4 --size 256 | tail -1
fi
stop
have=$(sed -n 2p d/store/ns/b/checkpoint)
echo "== store: $have entries, $(du -sh d/store | cut -f1), $(ls d/store/ns/b/segments | wc -l) segments"
start
ADMIN=$("$BIN" token issue --data d --role admin --namespace b --sub ann --ttl 7d)
APPR=$("$BIN" token issue --data d --role approver --namespace b --sub bob --ttl 7d)
export TRACEVAULT_SERVER=$URL
erase() {
  local label=$1 sql=$2 T0 T1 T2 id
  echo "== $label: RSS before $(grep VmRSS /proc/$SP/status | awk '{print $2, $3}')"
  T0=$(date +%s.%N)
  id=$("$BIN" erase request --token "$ADMIN" --namespace b --sql "$sql" --reason "bench $label" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["id"]); print("entries", d["entries"], file=sys.stderr)')
  T1=$(date +%s.%N)
  echo "server peak RSS after the request (VmHWM): $(grep VmHWM /proc/$SP/status | awk '{print $2, $3}')"
  "$BIN" erase approve --token "$APPR" "$id" > /dev/null
  until "$BIN" erase status --token "$ADMIN" "$id" | grep -q '"state":"performed"'; do sleep 0.5; done
  T2=$(date +%s.%N)
  echo "request (selection): $(python3 -c "print(round($T1 - $T0, 2))") s; approve to performed: $(python3 -c "print(round($T2 - $T1, 2))") s"
  sed 's/\x1b\[[0-9;]*m//g' serve.log | grep "erasure performed" | tail -1 | cut -c1-240
  echo "server peak RSS so far (VmHWM): $(grep VmHWM /proc/$SP/status | awk '{print $2, $3}')"
}
N=100000
erase contiguous "SELECT idx FROM traces WHERE idx >= $((have / 2)) AND idx < $((have / 2 + N))"
STEP=$((have / N))
erase spread "SELECT idx FROM traces WHERE idx % $STEP = ${SPREAD_OFFSET:-1} AND idx < $((STEP * N))"
stop
echo "== verify of the whole store"
/usr/bin/time -f "verify: %e s, peak %M KB" "$BIN" verify --data d 2>&1 | tail -3
