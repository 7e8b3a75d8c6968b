#!/usr/bin/env python3
"""Latency of a small query with `[query] isolation = "process"` and `"thread"`.

Starts `tracevault serve` once per mode on a fresh data directory, appends
10,000 events over 20 sessions, then times 30 one-session lookups and prints
p50/p90/max per mode.

  scripts/bench_isolation_latency.py --bin target/release/tracevault
"""
import argparse
import json
import time

from tvserver import Server


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--port", type=int, default=18651)
    a = ap.parse_args()
    for iso in ("process", "thread"):
        with Server(a.bin, a.port, f'[query]\nisolation = "{iso}"\n', "tv-lat-") as srv:
            w = srv.token("writer", "w", "a")
            r = srv.token("reader", "r", "a", "--from", "1970-01-01T00:00:00Z")

            def post(t, path, body):
                s, d = srv.request("POST", path, t, body)
                assert s == 200, d

            for i in range(10):
                post(w, "/v1/logs/a/events", {"events": [
                    {"session_id": f"s{j % 20}", "kind": "output", "content": f"l{i}-{j}"} for j in range(1000)]})
            time.sleep(2)
            ts = []
            for _ in range(30):
                t = time.perf_counter()
                post(r, "/v1/query", {"sql": "SELECT idx, content FROM traces WHERE session_id = 's7' "
                                             "ORDER BY idx LIMIT 50"})
                ts.append(time.perf_counter() - t)
            ts.sort()
            print(json.dumps({"isolation": iso, "p50_ms": round(ts[15] * 1000, 1),
                              "p90_ms": round(ts[27] * 1000, 1), "max_ms": round(ts[-1] * 1000, 1)}))


if __name__ == "__main__":
    main()
