#!/usr/bin/env bash
# The PostgreSQL side of the ingest comparison (issue 19, docs/benchmarks.md):
# PostgreSQL 15 with fsync and synchronous_commit on, one plain append-only
# table, loaded by CLIENTS clients with COPY batches of BATCH rows of SIZE
# bytes of content (each COPY its own transaction, so each batch waits for its
# WAL flush, as a tracevault receipt waits for its fdatasync). Run it in the
# same sitting as `tracevault bench ingest` with the same numbers.
#   scripts/bench_pg.sh WORKDIR [EVENTS] [CLIENTS] [BATCH] [SIZE]
# Prints the events/s of the whole load. Needs initdb, pg_ctl and psql.
set -euo pipefail
WORK=$1
EVENTS=${2:-1500000}
CLIENTS=${3:-8}
BATCH=${4:-500}
SIZE=${5:-1024}
PORT=18532
PGDATA=$WORK/pgdata
export PGHOST=$WORK PGPORT=$PORT PGDATABASE=postgres
RUN_AS=()
# PostgreSQL refuses to run as root: use the `postgres` user if we are root.
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd -r -m postgres
  RUN_AS=(runuser -u postgres --)
  mkdir -p "$WORK" && chown postgres "$WORK"
fi
rm -rf "$PGDATA"
"${RUN_AS[@]}" initdb -D "$PGDATA" -A trust -U postgres >/dev/null
cat >> "$PGDATA/postgresql.conf" <<CONF
fsync = on
synchronous_commit = on
full_page_writes = on
listen_addresses = ''
unix_socket_directories = '$WORK'
port = $PORT
max_wal_size = 4GB
shared_buffers = 1GB
CONF
"${RUN_AS[@]}" pg_ctl -D "$PGDATA" -l "$WORK/pg.log" -w start >/dev/null
trap '"${RUN_AS[@]}" pg_ctl -D "$PGDATA" -m fast stop >/dev/null || true' EXIT
"${RUN_AS[@]}" psql -U postgres -q -c "CREATE TABLE events (id bigserial PRIMARY KEY, ns text NOT NULL, session_id text NOT NULL, kind text NOT NULL, content text, received_at timestamptz NOT NULL DEFAULT now())"
PER=$(( EVENTS / CLIENTS ))
start=$(date +%s.%N)
for c in $(seq 1 "$CLIENTS"); do
  python3 - "$c" "$PER" "$BATCH" "$SIZE" <<'PY' | "${RUN_AS[@]}" psql -U postgres -q -v ON_ERROR_STOP=1 >/dev/null &
import sys, random
client, per, batch, size = (int(a) for a in sys.argv[1:])
words = "the model called tool search with query result reasoning step token agent plan observe answer because".split()
rng = random.Random(client)
texts = []
for i in range(8):
    s = []
    n = 0
    while n < size:
        w = rng.choice(words); s.append(w); n += len(w) + 1
    texts.append(" ".join(s)[:size])
out = sys.stdout
sent = 0
b = 0
while sent < per:
    n = min(batch, per - sent)
    out.write("COPY events (ns, session_id, kind, content) FROM STDIN;\n")
    for i in range(n):
        out.write(f"bench\tbench-{(b * batch + i) % 64}\toutput\t{texts[(b + i) % 8]}\n")
    out.write("\\.\n")
    sent += n
    b += 1
PY
done
wait
end=$(date +%s.%N)
rows=$("${RUN_AS[@]}" psql -U postgres -tA -c "SELECT count(*) FROM events")
python3 -c "import sys; e, s, r = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]); print(f'postgresql: {r} rows in {e - s:.2f} s: {r / (e - s):.0f} events/s')" "$end" "$start" "$rows"
