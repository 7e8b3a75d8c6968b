#!/usr/bin/env bash
# Interleaved A/B runs of scripts/bench_otlp.sh: on a shared machine the
# speed drifts by a fifth within minutes, so variants are compared round by
# round (A B C, A B C, ...) and summarised, never run as blocks.
#   scripts/bench_ab.sh WORKDIR ROUNDS EVENTS FORMAT VARIANT...
# VARIANT is "label;BIN;CONFIG;ENV" (CONFIG and ENV may be empty; ENV is
# space-separated NAME=VALUE pairs for the server), e.g.
#   scripts/bench_ab.sh /tmp/ab 5 600000 otlp-proto \
#     "zstd;target/release/tracevault;;" "lz4;target/release/tracevault;/tmp/lz4.toml;"
# FORMAT is that of `bench ingest --format` (otlp-proto, otlp-json, api).
# Prints each run, then per variant the median, mean, min and max of events/s
# and the median of the server's CPU time per event.
set -euo pipefail
WORK=$1; ROUNDS=$2; EVENTS=$3; FORMAT=$4; shift 4
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$WORK/ab-$(date +%s).txt
mkdir -p "$WORK"
for r in $(seq 1 "$ROUNDS"); do
  for v in "$@"; do
    IFS=';' read -r label bin config envs <<< "$v"
    line=$(env $envs BIN="$bin" CONFIG="$config" "$ROOT/scripts/bench_otlp.sh" "$WORK" "$EVENTS" 1 "$FORMAT" 2>&1 | grep '^run 1')
    rate=$(sed -nE 's/.*: ([0-9]+) events\/s.*/\1/p' <<< "$line" | head -1)
    cpu=$(sed -nE 's/.*server CPU [0-9.]+ s, ([0-9.]+) us per event.*/\1/p' <<< "$line")
    p99=$(sed -nE 's/.*p99 ([0-9.]+) ms.*/\1/p' <<< "$line" | head -1)
    echo "round $r $label: ${rate:-failed} events/s, p99 ${p99:-?} ms, ${cpu:-?} us CPU per event" | tee -a "$OUT"
  done
done
python3 - "$OUT" "$@" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"round \d+ (.+): (\d+) events/s, p99 \S+ ms, (\S+) us", line)
    if m:
        runs.setdefault(m[1], []).append((int(m[2]), float(m[3]) if m[3] != "?" else None))
for v in sys.argv[2:]:
    label = v.split(";")[0]
    r = runs.get(label, [])
    if not r:
        print(f"{label}: no successful run"); continue
    rates = [x for x, _ in r]; cpus = [c for _, c in r if c is not None]
    print(f"{label}: {len(r)} runs, events/s median {statistics.median(rates):,.0f}, "
          f"mean {statistics.mean(rates):,.0f}, min {min(rates):,}, max {max(rates):,}; "
          f"server CPU per event median {statistics.median(cpus) if cpus else float('nan'):.1f} us")
PY
