# One reader token: threads loop on a query whose JSON answer is rendered (up to 128 MiB) on the
# server's main runtime after the query slot is released. Measures /healthz and write-ack latency.
import threading, sys, os
from tv import *
nthreads = int(sys.argv[1]); dur = float(sys.argv[2])
tok = mint("reader", ["alpha"], sub="one", ttl_s=3600, win_from="2020-01-01T00:00:00Z")
W = mint("writer", ["alpha"], sub="wv1", ttl_s=3600)
sql = "select " + ",".join(f"null as c{i}" for i in range(2000)) + " from (select unnest(range(0,100000)) x)"
codes = {}; stop = False
def att():
    while not stop:
        r = q(tok, sql, arrow=bool(os.environ.get("ARROW")), timeout=600); codes[r.status_code] = codes.get(r.status_code,0)+1
        if r.status_code == 503: time.sleep(0.05)
lat = []
def probe():
    while not stop:
        t=time.time(); requests.get(BASE+"/healthz", timeout=120); a=time.time()-t
        t=time.time(); r=requests.post(BASE+"/v1/logs/alpha/events", headers=h(W), json={"events":[{"session_id":"p","kind":"message","content":"x"}]}, timeout=120); b=time.time()-t
        lat.append((round(a,3), round(b,3), r.status_code)); time.sleep(0.2)
p = threading.Thread(target=probe); p.start(); time.sleep(1.5)
base = list(lat)
ts = [threading.Thread(target=att) for i in range(nthreads)]
for t in ts: t.start()
time.sleep(dur); stop = True
for t in ts: t.join()
p.join()
import statistics
lt = [l[0] for l in lat[len(base):]]; lw = [l[1] for l in lat[len(base):]]
print("query answers", codes)
print("baseline max healthz/write", max(l[0] for l in base), max(l[1] for l in base))
print("under attack: healthz median %.3f max %.3f ; write-ack median %.3f max %.3f ; probes %d" % (statistics.median(lt), max(lt), statistics.median(lw), max(lw), len(lt)))
