#!/usr/bin/env bash
# Issue 19's `verify` target (docs/benchmarks.md): `tracevault verify` of a
# 2M-entry store against the SHA-256 bound of this machine.
#   scripts/bench_verify.sh WORKDIR [EVENTS] [RUNS] [JOBS]
# Builds WORKDIR/store (EVENTS entries of 1 KiB, through a real server on the
# release build, batches of 500 from 8 clients) unless it is there already,
# then runs `verify --jobs JOBS` RUNS times under /usr/bin/time and prints the
# bound (`openssl speed -evp sha256`, 1 KiB and 16 KiB blocks, per core).
# BIN= picks the binary that verifies (the store is written by the release
# build); PERF=1 records a call-graph profile of the first run
# (WORKDIR/perf.data).
# CONFIG=FILE starts the server with that config file (e.g. `[log]
# segment_compression = "lz4"`).
set -euo pipefail
WORK=$1
EVENTS=${2:-2000000}
RUNS=${3:-3}
JOBS=${4:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REL=$ROOT/target/release/tracevault
BIN=${BIN:-$REL}
[ -x "$REL" ] || { echo "build the release binary first: cargo build --release --workspace --locked" >&2; exit 1; }
mkdir -p "$WORK"
. "$ROOT/scripts/serve_bg.sh"
if [ ! -d "$WORK/store" ]; then
  PORT=18533
  serve_bg "$REL" "$WORK/store" $PORT "$WORK/serve.log"
  T=$("$REL" token issue --data "$WORK/store" --role writer --namespace b --sub bench)
  "$REL" bench ingest --url http://127.0.0.1:$PORT --token "$T" --ns b \
    --events "$EVENTS" --batch 500 --concurrency 8 --size 1024
  sleep 3
  kill -INT $SP; wait $SP || true
  trap - EXIT
fi
echo "store: $(ls "$WORK/store/store/ns/b/segments" | wc -l) segments, $(du -sb "$WORK/store/store/ns/b/segments" | cut -f1) bytes"
for r in $(seq 1 "$RUNS"); do
  PRE=()
  if [ "$r" = 1 ] && [ "${PERF:-0}" = 1 ]; then
    PRE=(perf record ${PERF_ARGS:--g} -o "$WORK/perf.data" --)
  fi
  /usr/bin/time -f "run $r: %e s wall, %U s user, %S s sys, %M KB peak" \
    "${PRE[@]}" "$BIN" verify --data "$WORK/store" --jobs "$JOBS" 2>&1 | grep -v "^\s*$" | tail -3
done
openssl speed -evp sha256 -seconds 2 2>/dev/null | tail -1
