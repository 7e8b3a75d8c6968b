#!/usr/bin/env python3
"""One query through `POST /v1/query`, RUNS times: prints `median_s rows N`
(and, for a single run, `rows <first value>` on a second line).
Usage: bench_ballista_q.py URL TOKEN SQL RUNS"""
import json, os, statistics, sys, time, urllib.request

url, token, sql, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
times, body = [], None
for _ in range(runs):
    req = urllib.request.Request(f"{url}/v1/query", data=json.dumps({"sql": sql}).encode(),
                                 headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=3600) as r:
        body = json.loads(r.read())
    times.append(time.perf_counter() - t)
if os.environ.get("EXPLAIN_PLAN"):
    # EXPLAIN ANALYZE on a cluster: one row per stage; operators without
    # their (long) metrics, and each scan's row and byte counts.
    for stage, plan in body["rows"]:
        print(f"  {stage} in {statistics.median(times):.3f} s")
        for line in plan.split("\n"):
            op = line.split(", metrics=[")[0][:110]
            m = line.split(", metrics=[")[-1]
            keep = [k for k in m.rstrip("]").split(", ") if k.split("=")[0] in ("output_rows", "tracevault_rows", "bytes_scanned", "files_opened")]
            print(f"    {op}  [{', '.join(keep)}]")
    sys.exit(0)
print(f"{statistics.median(times):.3f} s, {len(body['rows'])} rows, first {json.dumps(body['rows'][:1])[:80]}")
if runs == 1 and body["rows"]:
    print("rows " + str(body["rows"][0][0]))
