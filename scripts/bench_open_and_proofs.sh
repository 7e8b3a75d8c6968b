#!/bin/bash
# The writer's open (namespace recovered from every segment) and proof
# latency, against a second server on the same store that serves the
# namespace from its tiles. Run on the data directory of a stopped server
# holding namespace b (`KEEP=1 scripts/bench_verify_since.sh` builds one).
DATA=${1:?usage: bench_open_and_proofs.sh DATA_DIR_OF_A_STOPPED_SERVER [BIN]}
BIN=${2:-$(cd "$(dirname "$0")/.." && pwd)/target/debug/tracevault}
cd "$(dirname "$DATA")"
D=$(basename "$DATA")
TOK=$("$BIN" token issue --data "$D" --role writer --namespace b --sub bench --ttl 1d)
RTOK=$("$BIN" token issue --data "$D" --role reader --namespace b --sub r --ttl 1d --from 2000-01-01T00:00:00Z)
T0=$(date +%s.%N)
"$BIN" serve --data "$D" --listen 127.0.0.1:18480 > s1.log 2>&1 &
P1=$!
until grep -q "listening on" s1.log; do sleep 0.05; done
T1=$(date +%s.%N)
curl -s -o /dev/null -w "first append (opens the namespace): %{time_total}s\n" -H "Authorization: Bearer $TOK" -H 'content-type: application/json' -d '{"events":[{"session_id":"x","kind":"output","content":"hi"}]}' http://127.0.0.1:18480/v1/logs/b/events
echo "listening after $(python3 -c "print(round($T1 - $T0, 2))") s; writer RSS after open: $(grep VmRSS /proc/$P1/status)"
# proofs from memory (the writer)
python3 - <<'PY' "$RTOK" 18480
import sys,time,random,urllib.request
tok,port=sys.argv[1],sys.argv[2]
def get(p):
    r=urllib.request.Request(f"http://127.0.0.1:{port}{p}",headers={"Authorization":"Bearer "+tok}); return urllib.request.urlopen(r).read()
size=int(get("/v1/logs/b/checkpoint").decode().split("\n")[1])
random.seed(1); t=[]
for _ in range(300):
    i=random.randrange(size); s=time.perf_counter(); get(f"/v1/logs/b/proof/inclusion?index={i}&size={size}"); t.append(time.perf_counter()-s)
t.sort(); print(f"writer, size {size}: proof p50 {t[150]*1000:.2f} ms p99 {t[297]*1000:.2f} ms")
PY
# a second server on the same store, reading it (tiles)
rm -rf r-bench; mkdir -p r-bench/keys; cp "$D"/keys/log.key "$D"/keys/issuer.key r-bench/keys/ 2>/dev/null; cp -r "$D"/keys/issuer* r-bench/keys/ 2>/dev/null
"$BIN" serve --data r-bench --store "file://$PWD/$D/store" --listen 127.0.0.1:18481 > s2.log 2>&1 &
P2=$!
until grep -q "listening on" s2.log; do sleep 0.05; done
RTOK2=$("$BIN" token issue --data r-bench --role reader --namespace b --sub r --ttl 1d --from 2000-01-01T00:00:00Z)
python3 - <<'PY' "$RTOK2" 18481
import sys,time,random,urllib.request
tok,port=sys.argv[1],sys.argv[2]
def get(p):
    r=urllib.request.Request(f"http://127.0.0.1:{port}{p}",headers={"Authorization":"Bearer "+tok}); return urllib.request.urlopen(r).read()
s=time.perf_counter(); size=int(get("/v1/logs/b/checkpoint").decode().split("\n")[1]); first=time.perf_counter()-s
random.seed(1); t=[]
for _ in range(300):
    i=random.randrange(size); s=time.perf_counter(); get(f"/v1/logs/b/proof/inclusion?index={i}&size={size}"); t.append(time.perf_counter()-s)
t.sort(); print(f"second server (tiles), size {size}: first checkpoint read (loads the view) {first*1000:.0f} ms; proof p50 {t[150]*1000:.2f} ms p99 {t[297]*1000:.2f} ms")
PY
echo "reader RSS: $(grep VmRSS /proc/$P2/status)"
kill -INT $P1 $P2; wait
