#!/usr/bin/env python3
"""Ack and /healthz latency while readers run the heaviest queries they can.

Starts `tracevault serve` (the binary given) on a fresh data directory, seeds
events, then measures, for `--seconds` each:
  1. quiet: a writer appending batches and a prober of /healthz, nothing else;
  2. heavy: the same while `--readers` clients run heavy SQL back to back
     (cross joins, string_agg over everything, sorts of every row).
Prints p50/p99/max of both latencies in each phase, as JSON. Run it once per
`[query] isolation` setting to compare (issue 12: acknowledgements keep their
usual latency while the heaviest queries run).

  scripts/bench_heavy_queries.py --bin target/release/tracevault --isolation process
"""
import argparse
import json
import threading
import time

from tvserver import Server

HEAVY = [
    "SELECT count(*) FROM traces a CROSS JOIN traces b",
    "SELECT length(string_agg(content, ',')) FROM traces",
    "SELECT session_id, content FROM traces ORDER BY content DESC LIMIT 5",
    "SELECT count(DISTINCT concat(a.content, b.session_id)) FROM traces a JOIN traces b ON a.kind = b.kind",
]


def pct(xs, p):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * p))] * 1000, 1) if xs else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--isolation", default="process", choices=["process", "thread"])
    ap.add_argument("--seed", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--port", type=int, default=18631)
    a = ap.parse_args()
    cfg = (f'[query]\nisolation = "{a.isolation}"\ntimeout_s = 30\nmax_concurrent = {a.readers}\n'
           f'max_concurrent_per_token = {a.readers}\nmax_scan_rows = 100000000\n')
    with Server(a.bin, a.port, cfg, "tv-heavy-") as srv:
        writer = srv.token("writer", "w", "h")
        reader = srv.token("reader", "r", "h", "--from", "1970-01-01T00:00:00Z")
        for i in range(0, a.seed, 1000):
            evs = [{"session_id": f"s{j % 50}", "kind": "output", "content": f"line {j} " + "x" * 200}
                   for j in range(i, i + 1000)]
            s, b = srv.request("POST", "/v1/logs/h/events", writer, {"events": evs})
            assert s == 200, b
        out = {"isolation": a.isolation, "seeded": a.seed}
        for phase in ("quiet", "heavy"):
            stop = threading.Event()
            acks, health, answered, codes = [], [], [0, 0], {}

            def write():
                n = 0
                while not stop.is_set():
                    evs = [{"session_id": "live", "kind": "output", "content": f"live {n}-{k}"} for k in range(100)]
                    t = time.perf_counter()
                    s, b = srv.request("POST", "/v1/logs/h/events", writer, {"events": evs})
                    acks.append(time.perf_counter() - t)
                    assert s == 200, b
                    n += 1
                    time.sleep(0.05)

            def probe():
                while not stop.is_set():
                    t = time.perf_counter()
                    s, _ = srv.request("GET", "/healthz")
                    health.append(time.perf_counter() - t)
                    assert s == 200
                    time.sleep(0.1)

            def heavy(k):
                i = k
                while not stop.is_set():
                    s, b = srv.request("POST", "/v1/query", reader, {"sql": HEAVY[i % len(HEAVY)]})
                    answered[0 if s == 200 else 1] += 1
                    if s != 200:
                        code = json.loads(b).get("error", {}).get("code", str(s))
                        codes[code] = codes.get(code, 0) + 1
                    i += 1

            threads = [threading.Thread(target=write), threading.Thread(target=probe)]
            if phase == "heavy":
                threads += [threading.Thread(target=heavy, args=(k,)) for k in range(a.readers)]
            for t in threads:
                t.start()
            time.sleep(a.seconds)
            stop.set()
            for t in threads:
                t.join()
            out[phase] = {
                "ack_ms": {"p50": pct(acks, 0.5), "p99": pct(acks, 0.99), "max": pct(acks, 1.0), "n": len(acks)},
                "healthz_ms": {"p50": pct(health, 0.5), "p99": pct(health, 0.99), "max": pct(health, 1.0)},
                "heavy_queries": {"answered": answered[0], "refused_or_failed": answered[1], "codes": codes},
            }
        print(json.dumps(out))


if __name__ == "__main__":
    main()
