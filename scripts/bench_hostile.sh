#!/usr/bin/env bash
# Hostile inputs against one build (docs/benchmarks.md, thirteenth session):
#
#   scripts/bench_hostile.sh BIN LABEL deep|group|slowread|render|cycles [CONFIG]
#
# Starts BIN on a fresh data dir (under $WORK, default /tmp/hostile) and runs
# one attack of the attacker reviews (scripts/hostile/), then prints the
# server's peak RSS (VmHWM):
# - deep: four 20 KB gzip OTLP bodies holding 10M empty AnyValues 14 deep;
# - group: four 18 KB gzip OTLP bodies of 9.5M empty AnyValues and a group;
# - slowread: 20 connections each asking for a 60 MB answer, never read;
# - render: 6 threads of one reader asking for 2,000 null columns x 100k rows
#   as JSON for 15 s, while /healthz and a one-event append are timed;
# - cycles: two readers leave four 60 MB answers unread per cycle, three
#   cycles of 8 s (give CONFIG a stall timeout below that).
set -u
BIN=$1; LABEL=$2; ATTACK=$3; CONFIG=${4:-}
S=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-$S/../.venv/bin/python3}
PORT=$((30000 + RANDOM % 10000))
D=${WORK:-/tmp/hostile}/$LABEL-$ATTACK; rm -rf $D; mkdir -p $D
$BIN serve --data $D/data --listen 127.0.0.1:$PORT ${CONFIG:+--config "$CONFIG"} > $D/serve.log 2>&1 &
SP=$!; echo $SP > $D/pid
for _ in $(seq 100); do grep -q "listening on" $D/serve.log && break; sleep 0.1; done
sleep 1
export TVBASE=http://127.0.0.1:$PORT TVDATA=$D/data PORT PIDFILE=$D/pid
cd "$S/hostile"
case $ATTACK in
  deep)
    $PY -c "
from tv import *
open('$D/writer.tok','w').write(mint('writer',['alpha'],sub='deep',ttl_s=3600))"
    $PY deep_otlp.py 10000000 14 4 $PORT $D/writer.tok ;;
  group)
    $PY -c "
from tv import *
open('$D/writer.tok','w').write(mint('writer',['alpha'],sub='group',ttl_s=3600))"
    $PY group_otlp.py 9500000 1 4 $PORT $D/writer.tok $D/pid ;;
  slowread) HOLD=5 $PY slowread.py 20 60 3500 ;;
  render) $PY render1.py 6 15 ;;
  cycles) $PY unread_cycles.py 60 3 8 ;;
esac
echo "$LABEL $ATTACK peak RSS: $(grep VmHWM /proc/$SP/status)"
kill $SP; wait $SP 2>/dev/null
