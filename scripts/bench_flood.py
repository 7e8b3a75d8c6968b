#!/usr/bin/env python3
"""What unauthenticated and slow traffic costs the vault (issue 12).

Starts `tracevault serve` on a fresh data directory and measures:
  1. a flood of `--requests` anonymous / bad-token requests at `--concurrency`:
     how many entries `_audit` grows by (one `requests_denied` entry per
     `denied_audit_interval_s` is the design), and the flood's rate;
  2. a slow body (1 byte/s) on `POST /v1/query` with a valid token: when the
     server answers 408 (`body_read_timeout_s`);
  3. a slow header (1 byte/s): when the server closes it (`header_read_timeout_s`).
Prints JSON.

  scripts/bench_flood.py --bin target/release/tracevault
"""
import argparse
import http.client
import json
import socket
import threading
import time

from tvserver import Server


def audit_size(srv, admin):
    status, body = srv.request("GET", "/v1/logs/_audit/checkpoint", admin)
    return int(body.decode().splitlines()[1]) if status == 200 else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--port", type=int, default=18641)
    a = ap.parse_args()
    cfg = ("[limits]\ndenied_audit_interval_s = 10\nbody_read_timeout_s = 5\n"
           "[server]\nheader_read_timeout_s = 5\n")
    with Server(a.bin, a.port, cfg, "tv-flood-") as srv:
        admin = srv.admin()
        reader = srv.token("reader", "r", "x", "--from", "1970-01-01T00:00:00Z")
        time.sleep(11)
        before = audit_size(srv, admin)
        done = [0]
        lock = threading.Lock()

        def flood(n):
            c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
            for i in range(n):
                h = {"Authorization": "Bearer not.a.token"} if i % 2 else {}
                c.request("GET", "/v1/vault", headers=h)
                r = c.getresponse()
                r.read()
                assert r.status == 401, r.status
                with lock:
                    done[0] += 1

        per = a.requests // a.concurrency
        t0 = time.perf_counter()
        ts = [threading.Thread(target=flood, args=(per,)) for _ in range(a.concurrency)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        flood_s = time.perf_counter() - t0
        time.sleep(11)
        after = audit_size(srv, admin)

        def slow(head, body_bytes):
            s = socket.create_connection(("127.0.0.1", a.port))
            t = time.perf_counter()
            s.sendall(head)
            s.settimeout(1)
            got = b""
            for _ in range(120):
                try:
                    s.sendall(body_bytes)
                except OSError:
                    break
                try:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                    if b"\r\n\r\n" in got:
                        break
                except socket.timeout:
                    pass
            return round(time.perf_counter() - t, 2), got.split(b"\r\n", 1)[0].decode(errors="replace")

        body_s, body_answer = slow(
            f"POST /v1/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {reader}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode(), b" ")
        header_s, header_answer = slow(b"G", b"E")
        print(json.dumps({
            "flood": {"requests": done[0], "seconds": round(flood_s, 2), "per_s": round(done[0] / flood_s),
                      "audit_entries_before": before, "audit_entries_after": after,
                      "audit_growth": after - before},
            "slow_body": {"answered_after_s": body_s, "answer": body_answer},
            "slow_header": {"closed_after_s": header_s, "answer": header_answer or "(closed)"},
        }))


if __name__ == "__main__":
    main()
