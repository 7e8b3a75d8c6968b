#!/usr/bin/env bash
# One-session lookups through HTTP (issue 19, target 5): starts the release
# server on DATA with CONFIG, then times `SELECT idx, kind, content FROM
# traces WHERE session_id = ...` (reader token, masked) with curl.
#
#   scripts/bench_lookup.sh DATA CONFIG [N] [NS]
#
# DATA was filled by `bench ingest --session-events 100` (sessions
# sNNNNNNNN-k). Prints the first query of the fresh server, then N lookups
# of other sessions (p50, min, max), each its own session so that nothing
# but the page cache and the server's own caches is warm.
set -euo pipefail
data=$1; cfg=$2; n=${3:-15}; ns=${4:-bench}
bin=${TRACEVAULT_BIN:-target/release/tracevault}
port=$((20000 + RANDOM % 20000))
log=$(mktemp)
"$bin" serve --data "$data" --listen "127.0.0.1:$port" --config "$cfg" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
sleep 1  # the spare query worker starts with the server
tok=$("$bin" token issue --data "$data" --role reader --namespace "$ns" \
  --from 1970-01-01T00:00:00Z --ttl 1h)
q() {
  curl -s -o /tmp/bench_lookup.out -w '%{time_total}\n' -H "authorization: Bearer $tok" \
    -H 'content-type: application/json' "http://127.0.0.1:$port/v1/query" \
    -d "{\"sql\": \"SELECT idx, kind, content FROM traces WHERE session_id = '$1' ORDER BY idx\"}"
}
first=$(q s00000007-0)
rows=$(python3 -c 'import json; print(len(json.load(open("/tmp/bench_lookup.out"))["rows"]))')
echo "first query of the fresh server: ${first}s ($rows rows)"
times=()
for i in $(seq "$n"); do
  times+=("$(q "s$(printf %08d $((i * 997 % 20000)))-$((i % 5))")")
done
printf '%s\n' "${times[@]}" | sort -n | python3 -c '
import sys
t = [float(x) * 1000 for x in sys.stdin]
print(f"{len(t)} lookups: p50 {t[len(t)//2]:.1f} ms, min {t[0]:.1f} ms, max {t[-1]:.1f} ms")'
