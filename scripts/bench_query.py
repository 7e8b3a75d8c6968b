#!/usr/bin/env python3
"""SQL benchmark: tracevault's `POST /v1/query` against DuckDB reading the same
segment Parquet files directly, in the same run (docs/benchmarks.md).

Usage:
  scripts/bench_query.py --url http://127.0.0.1:18490 --ns bench \
      --reader READER_TOKEN --unmasked ADMIN_TOKEN \
      --segments /path/to/data/store/ns/bench/segments --session s00010000-0 --runs 3

- `--reader`: a reader token (masked per its profile: what an auditor pays);
- `--unmasked`: a token whose masking profile is `unmasked = true` (the cost of
  the engine without masking).
Each query runs once to warm the page cache, then `--runs` times; the median is
reported. Results of both engines are compared, so a fast wrong answer is caught.
Needs `duckdb` (tests/requirements.txt).
"""

import argparse
import json
import statistics
import time
import urllib.request

import duckdb


def tv_query(url, token, sql, timeout=900):
    req = urllib.request.Request(
        f"{url}/v1/query",
        data=json.dumps({"sql": sql}).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        body = json.loads(r.read())
    return time.perf_counter() - t, body


def duck_query(con, sql):
    t = time.perf_counter()
    rows = con.execute(sql).fetchall()
    return time.perf_counter() - t, rows


def median_of(runs, f):
    f()  # warm-up
    times, last = [], None
    for _ in range(runs):
        dt, last = f()
        times.append(dt)
    return statistics.median(times), last


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--ns", required=True)
    p.add_argument("--reader", required=True)
    p.add_argument("--unmasked", required=True)
    p.add_argument("--segments", required=True)
    p.add_argument("--session", required=True)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()

    con = duckdb.connect()
    src = f"read_parquet('{a.segments}/*.parquet')"
    out = []

    # 1. Full-scan aggregate: events per kind per hour.
    tv_sql = ("SELECT kind, date_trunc('hour', received_at) AS hour, count(*) AS n "
              "FROM traces GROUP BY kind, hour ORDER BY hour, kind")
    # (timestamps as text: DuckDB's Python client needs pytz to return them)
    dk_sql = (f"SELECT kind, CAST(date_trunc('hour', received_at) AS VARCHAR) AS hour, count(*) AS n "
              f"FROM {src} GROUP BY kind, hour ORDER BY hour, kind")
    t_tv, body = median_of(a.runs, lambda: tv_query(a.url, a.reader, tv_sql))
    t_dk, rows = median_of(a.runs, lambda: duck_query(con, dk_sql))
    tv_counts = sorted((r[0], r[2]) for r in body["rows"])
    dk_counts = sorted((r[0], r[2]) for r in rows)
    assert tv_counts == dk_counts, (tv_counts, dk_counts)
    total = sum(n for _, n in dk_counts)
    # Scan statistics are shown to admins only: ask once with the admin token.
    scan = tv_query(a.url, a.unmasked, tv_sql)[1].get("scan")
    out.append(("aggregate per kind per hour (full scan)", total, t_tv, t_dk, scan))

    # 2. Single-session lookup with content (masked for the reader).
    tv_sql = ("SELECT idx, session_seq, kind, received_at, content FROM traces "
              f"WHERE session_id = '{a.session}' ORDER BY session_seq")
    dk_sql = (f"SELECT idx, session_seq, kind, CAST(received_at AS VARCHAR), content FROM {src} "
              f"WHERE session_id = '{a.session}' ORDER BY session_seq")
    t_tv, body = median_of(a.runs, lambda: tv_query(a.url, a.reader, tv_sql))
    t_dk, rows = median_of(a.runs, lambda: duck_query(con, dk_sql))
    assert [r[0] for r in body["rows"]] == [r[0] for r in rows], "session rows differ"
    scan = tv_query(a.url, a.unmasked, tv_sql)[1].get("scan")
    out.append((f"one session ({len(rows)} events, with content)", total, t_tv, t_dk, scan))

    # 3. Masking overhead: every content value through the engine, masked or not.
    tv_sql = "SELECT count(*), sum(length(content)) FROM traces"
    dk_sql = f"SELECT count(*), sum(length(content)) FROM {src}"
    runs = max(1, a.runs // 2)
    t_plain, b_plain = median_of(runs, lambda: tv_query(a.url, a.unmasked, tv_sql))
    t_mask, b_mask = median_of(runs, lambda: tv_query(a.url, a.reader, tv_sql))
    t_dk, rows = median_of(runs, lambda: duck_query(con, dk_sql))
    n, content_bytes = rows[0]
    assert b_plain["rows"][0][0] == n == b_mask["rows"][0][0]
    mb = content_bytes / 1e6
    out.append(("sum(length(content)), unmasked profile", n, t_plain, t_dk, b_plain.get("scan")))
    out.append(("sum(length(content)), reader (strict masking)", n, t_mask, t_dk, b_plain.get("scan")))

    print("| query | rows in vault | tracevault (median) | DuckDB (median) | tracevault scan (admin view) |")
    print("|---|---|---|---|---|")
    for name, rows_n, tv, dk, scan in out:
        print(f"| {name} | {rows_n:,} | {tv*1000:,.0f} ms | {dk*1000:,.0f} ms | {json.dumps(scan)} |")
    print()
    print(f"content bytes: {mb:,.0f} MB; unmasked {mb / t_plain:,.0f} MB/s, masked {mb / t_mask:,.0f} MB/s, "
          f"DuckDB {mb / t_dk:,.0f} MB/s; masking adds {t_mask - t_plain:,.1f} s "
          f"({mb / max(t_mask - t_plain, 1e-9):,.0f} MB/s of masking alone)")


if __name__ == "__main__":
    main()
