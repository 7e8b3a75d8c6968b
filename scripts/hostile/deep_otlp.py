# OTLP protobuf bodies holding N empty AnyValues under DEPTH nested arrays, sent
# gzip'd (~20 KB on the wire for 20 MB decoded), CONCURRENCY at once.
# Usage: deep_otlp.py N DEPTH CONCURRENCY PORT TOKEN_FILE
import sys, gzip, time, threading, requests
N=int(sys.argv[1]); depth=int(sys.argv[2]); conc=int(sys.argv[3]); port=sys.argv[4]; tokfile=sys.argv[5]
from protobuf import ld
anyv=ld(5, b'\x0a\x00'*N)
for _ in range(depth): anyv=ld(5, ld(1, anyv))
kv=ld(1,b'deep')+ld(2,anyv)
span=ld(1,bytes(range(16)))+ld(2,bytes([9,9,9,9,9,9,8,depth]))+ld(5,b'n')+ld(9,kv)
body=gzip.compress(ld(1, ld(2, ld(2, span))),9)
print('gzip body bytes',len(body),flush=True)
t=open(tokfile).read().strip()
def one(i):
    t0=time.time()
    r=requests.post(f'http://127.0.0.1:{port}/otlp/v1/traces',data=body,headers={'Authorization':'Bearer '+t,'Content-Type':'application/x-protobuf','Content-Encoding':'gzip'},timeout=900)
    print(i,r.status_code,r.content[:100],round(time.time()-t0,1),flush=True)
ths=[threading.Thread(target=one,args=(i,)) for i in range(conc)]
[t.start() for t in ths]; [t.join() for t in ths]
