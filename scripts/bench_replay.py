#!/usr/bin/env python3
"""Replay benchmark (docs/benchmarks.md): time to first frame, time to a full
integrity verdict, and memory of `tracevault replay` on one large session,
through each source (server, data directory, export bundle), in a real
terminal (tmux, read with capture-pane).

Usage:
  scripts/bench_replay.py --bin target/release/tracevault --work /tmp/bench-replay \
      [--events 100000] [--noise 100000] [--size 512]

It starts a server on a fresh data directory, writes one session of
`--events` events (kinds cycling prompt, reasoning, tool_call, tool_result,
response; 100 ms apart with a 30 s idle gap every 1,000) and `--noise` events
of other sessions, then for each source measures from the Enter key to the
first frame showing the session (header and timeline), to the verdict, the
replayer's resident memory after opening, and after scrolling through the
whole session (End, then 400 PgUp: the time until the screen settles).
Prints one JSON object.
"""

import argparse
import json
import os
import shutil
import subprocess
import time
import urllib.request

PORT = 18555
URL = f"http://127.0.0.1:{PORT}"
KINDS = ["prompt", "reasoning", "tool_call", "tool_result", "response"]


def http(method, path, token, body=None, raw=False, timeout=900):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(f"{URL}{path}", data=data, method=method)
    req.add_header("authorization", f"Bearer {token}")
    if isinstance(body, bytes):
        req.add_header("content-type", "application/x-ndjson")
    elif body is not None:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        out = r.read()
    return out if raw else json.loads(out)


def seed(writer, n, noise, size):
    base = 1_795_000_000_000  # ms
    pad = "x" * size
    sent = 0
    batch = 1000
    while sent < n:
        lines = []
        for i in range(sent, min(n, sent + batch)):
            k = KINDS[i % len(KINDS)]
            t = base + i * 100 + (i // 1000) * 30_000
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t / 1000)) + ".%03dZ" % (t % 1000)
            e = {"session_id": "big", "kind": k, "ts": ts}
            if k in ("tool_call", "tool_result"):
                e["name"] = "search_docs"
                e["span_id" if k == "tool_call" else "parent_span_id"] = f"sp{i // 5}"
                e["content"] = {"query": f"step {i}", "pad": pad}
            else:
                e["content"] = f"step {i}: {pad}"
            lines.append(json.dumps(e))
        # Noise: other sessions interleaved, so the session is spread out.
        for j in range(noise * len(lines) // max(n, 1)):
            lines.append(json.dumps({"session_id": f"noise-{j % 97}", "kind": "output", "content": pad}))
        wait = "?wait=checkpoint" if sent + batch >= n else ""
        http("POST", f"/v1/logs/bench/events{wait}", writer, ("\n".join(lines) + "\n").encode())
        sent += batch


class Tmux:
    def __init__(self, work):
        self.sock = os.path.join(work, "tmux.sock")
        self.run("new-session", "-d", "-s", "b", "-x", "160", "-y", "50", "sh")

    def run(self, *args):
        return subprocess.run(["tmux", "-S", self.sock, "-f", "/dev/null", *args],
                              capture_output=True, text=True, check=True).stdout

    def keys(self, *keys):
        self.run("send-keys", "-t", "b", *keys)

    def screen(self):
        return self.run("capture-pane", "-p", "-t", "b")

    def wait(self, ok, timeout=600, step=0.01):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            s = self.screen()
            if ok(s):
                return time.perf_counter() - t0
            time.sleep(step)
        raise TimeoutError(self.screen())

    def close(self):
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True)


def rss_kb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def measure(tmux, cmd, n):
    tmux.keys("-l", cmd)
    t0 = time.perf_counter()
    tmux.keys("Enter")
    first = tmux.wait(lambda s: f"events {n}" in s and "+0" in s)
    first_frame = time.perf_counter() - t0
    pid = int(subprocess.run(["pgrep", "-n", "-f", "tracevault replay"], capture_output=True,
                             text=True).stdout.split()[0])
    open_kb = rss_kb(pid)
    verdict = tmux.wait(lambda s: "verified:" in s or "FAILED" in s or "unverified" in s)
    verdict_at = first + verdict
    screen = tmux.screen()
    badge = next((l.strip() for l in screen.splitlines() if "verified" in l or "FAILED" in l), "")
    tmux.keys("G")
    t = time.perf_counter()
    tmux.wait(lambda s: f"#{n}/{n}" in s)
    to_end = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(8):
        tmux.keys(*(["PPage"] * 50))
    # Until the screen stops changing for 300 ms (every key handled).
    last, since = None, time.perf_counter()
    while True:
        s = tmux.screen()
        if s != last:
            last, since = s, time.perf_counter()
        elif time.perf_counter() - since > 0.3:
            break
        time.sleep(0.01)
    pages_back = since - t
    scrolled_kb = rss_kb(pid)
    peak_kb = rss_kb(pid, "VmHWM")
    tmux.keys("q")
    tmux.wait(lambda s: "EXIT=" in s)
    tmux.keys("clear", "Enter")
    time.sleep(0.3)
    return {
        "first_frame_s": round(first_frame, 3),
        "verdict_s": round(verdict_at, 3),
        "badge": badge[:100],
        "end_key_s": round(to_end, 3),
        "400_pgup_s": round(pages_back, 3),
        "rss_after_open_mb": round(open_kb / 1024, 1),
        "rss_after_scroll_mb": round(scrolled_kb / 1024, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--noise", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=512)
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    data = os.path.join(a.work, "d")
    tok = lambda role, sub: subprocess.run(
        [a.bin, "token", "issue", "--data", data, "--role", role, "--namespace", "bench", "--sub", sub,
         "--ttl", "2h"] + (["--from", "1970-01-01T00:00:00Z"] if role == "reader" else []),
        capture_output=True, text=True, check=True).stdout.strip()
    srv = subprocess.Popen([a.bin, "serve", "--data", data, "--listen", f"127.0.0.1:{PORT}"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    pubkey = None
    for line in srv.stdout:
        if line.startswith("log public key: "):
            pubkey = line.split(": ", 1)[1].strip()
        if line.startswith("listening on"):
            break
    tmux = None
    try:
        writer, reader, approver = tok("writer", "w"), tok("reader", "responder"), tok("approver", "boss")
        t = time.perf_counter()
        seed(writer, a.events, a.noise, a.size)
        seeded = time.perf_counter() - t
        vk = http("GET", "/v1/vault", reader)["namespaces"][0]["verifier_key"]
        tmux = Tmux(a.work)
        out = {"events": a.events, "noise": a.noise, "seed_s": round(seeded, 1)}
        out["server"] = measure(tmux, f"{a.bin} replay --server {URL} --token {reader} --session big "
                                      f"--key '{vk}'; echo EXIT=$?", a.events)
        out["data"] = measure(tmux, f"{a.bin} replay --data {data} --ns bench --session big "
                                    f"--key {pubkey}; echo EXIT=$?", a.events)
        t = time.perf_counter()
        ex = http("POST", "/v1/exports", reader, {"namespace": "bench", "session_id": "big",
                                                  "reason": "benchmark"})
        out["export_request_s"] = round(time.perf_counter() - t, 2)
        http("POST", f"/v1/exports/{ex['id']}/approve", approver, {})
        bundle = os.path.join(a.work, "big.tar")
        t = time.perf_counter()
        body = http("GET", f"/v1/exports/{ex['id']}/bundle", reader, raw=True)
        out["export_download_s"] = round(time.perf_counter() - t, 2)
        out["bundle_mb"] = round(len(body) / 1e6, 1)
        with open(bundle, "wb") as f:
            f.write(body)
        out["bundle"] = measure(tmux, f"{a.bin} replay --bundle {bundle} --key '{vk}'; echo EXIT=$?",
                                a.events)
        print(json.dumps(out, indent=2))
    finally:
        if tmux:
            tmux.close()
        srv.terminate()
        srv.wait()


if __name__ == "__main__":
    main()
