#!/usr/bin/env python3
"""One query through `POST /v1/query`, RUNS times: prints `median_s rows N`
(and, for a single run, `rows <first value>` on a second line).
Usage: bench_ballista_q.py URL TOKEN SQL RUNS"""
import json, statistics, sys, time, urllib.request

url, token, sql, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
times, body = [], None
for _ in range(runs):
    req = urllib.request.Request(f"{url}/v1/query", data=json.dumps({"sql": sql}).encode(),
                                 headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=3600) as r:
        body = json.loads(r.read())
    times.append(time.perf_counter() - t)
print(f"{statistics.median(times):.3f} s, {len(body['rows'])} rows, first {json.dumps(body['rows'][:1])[:80]}")
if runs == 1 and body["rows"]:
    print("rows " + str(body["rows"][0][0]))
