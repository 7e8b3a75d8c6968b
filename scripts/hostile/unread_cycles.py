# Unread answers, cycle after cycle: two reader tokens each leave two 60 MB
# answers unread on connections that stay open, CYCLES times, waiting WAIT
# seconds each time (past the server's answer stall timeout); prints the
# server's RSS, its open connections and what their send queues hold, and
# whether another reader is served.
# Usage: unread_cycles.py MB CYCLES WAIT   (env: TVBASE, TVDATA, PORT, PIDFILE)
import socket, json, time, sys, os, subprocess
from tv import *
port = int(os.environ["PORT"]); pid = int(open(os.environ["PIDFILE"]).read())
mb, cycles, wait = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
toks = {n: mint("reader", ["alpha"], sub=n, ttl_s=3600, win_from="2020-01-01T00:00:00Z")
        for n in ["r1", "r2", "victim"]}
def rss():
    return [int(l.split()[1]) // 1024 for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0]
def conns():
    out = [l for l in subprocess.run(["ss", "-tn", f"sport = :{port}"], capture_output=True, text=True).stdout.strip().splitlines()[1:] if l.startswith("ESTAB")]
    return len(out), sum(int(l.split()[2]) for l in out) // (1 << 20)
half = mb * 1000000 // 2
body = json.dumps({"sql": f"select repeat('x', {half}) a, repeat('y', {half}) b"}).encode()
socks = []
print("start rss", rss(), flush=True)
for c in range(cycles):
    for n in ["r1", "r2"]:
        for _ in range(2):
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall((f"POST /v1/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {toks[n]}\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
            s.settimeout(90); hdr = s.recv(40); socks.append(s)
            if not hdr.startswith(b"HTTP/1.1 200"):
                print("  not 200:", hdr)
    time.sleep(wait)
    r = requests.post(BASE + "/v1/query", headers=h(toks["victim"]), json={"sql": "select 1"})
    print("cycle", c, "victim", r.status_code, "established conns / their send queues MB", conns(), "rss MB", rss(), flush=True)
for s in socks:
    s.close()
time.sleep(3); print("sockets closed: rss MB", rss(), "conns", conns())
