#!/usr/bin/env python3
"""Latency of a small query with `[query] isolation = "process"` and `"thread"`.

Starts `tracevault serve` once per mode on a fresh data directory, appends
10,000 events over 20 sessions, then times 30 one-session lookups and prints
p50/p90/max per mode.

  scripts/bench_isolation_latency.py --bin target/release/tracevault
"""
import argparse
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--port", type=int, default=18651)
    a = ap.parse_args()
    for iso in ("process", "thread"):
        work = tempfile.mkdtemp(prefix="tv-lat-")
        data = os.path.join(work, "d")
        cfg = os.path.join(work, "c.toml")
        with open(cfg, "w") as f:
            f.write(f'[query]\nisolation = "{iso}"\n')
        srv = subprocess.Popen([a.bin, "serve", "--data", data, "--listen", f"127.0.0.1:{a.port}", "--config", cfg],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            for line in srv.stdout:
                if line.startswith("listening on"):
                    break
            tok = lambda role, *extra: subprocess.run(
                [a.bin, "token", "issue", "--data", data, "--role", role, "--namespace", "a", "--sub", role, *extra],
                capture_output=True, text=True, check=True).stdout.strip()
            w, r = tok("writer"), tok("reader", "--from", "1970-01-01T00:00:00Z")

            def post(t, path, body):
                c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=60)
                c.request("POST", path, json.dumps(body), {"Authorization": "Bearer " + t,
                                                           "Content-Type": "application/json"})
                x = c.getresponse()
                d = x.read()
                assert x.status == 200, d
                return d

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
        finally:
            srv.terminate()
            srv.wait()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
