# OTLP protobuf bodies of N empty AnyValues with an empty unknown group (wire types 3/4) at the
# end, which the decoder skips: the pre-decode count could not walk it and was skipped too.
# Usage: group_otlp.py N GROUP(0/1) CONC PORT TOKENFILE PIDFILE
import sys, gzip, time, threading, requests, os
N=int(sys.argv[1]); group=sys.argv[2]=="1"; conc=int(sys.argv[3]); port=sys.argv[4]; tok=open(sys.argv[5]).read().strip()
pid=int(open(sys.argv[6]).read())
from protobuf import ld
arr=ld(5, b'\x0a\x00'*N)          # AnyValue{array_value: ArrayValue{values: N x empty AnyValue}}
kv=ld(1,b'big')+ld(2,arr)
span=ld(1,bytes(range(16)))+ld(2,bytes([9,9,9,9,9,9,8,7]))+ld(5,b'n')+ld(9,kv)
req=ld(1, ld(2, ld(2, span)))
if group: req += bytes([(15<<3)|3, (15<<3)|4])   # empty group, unknown field 15 of the request
body=gzip.compress(req,6)
print('raw',len(req),'gzip',len(body),flush=True)
peak=[0]; done=[False]
def mon():
    while not done[0]:
        r=[int(l.split()[1])//1024 for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0]
        peak[0]=max(peak[0],r)
        if r>3500: print("RSS cap reached",r,flush=True)
        time.sleep(0.05)
threading.Thread(target=mon,daemon=True).start()
def one(i):
    t0=time.time()
    r=requests.post(f'http://127.0.0.1:{port}/otlp/v1/traces',data=body,headers={'Authorization':'Bearer '+tok,'Content-Type':'application/x-protobuf','Content-Encoding':'gzip'},timeout=900)
    print(i,r.status_code,r.content[:120],round(time.time()-t0,1),flush=True)
ths=[threading.Thread(target=one,args=(i,)) for i in range(conc)]
[t.start() for t in ths]; [t.join() for t in ths]; done[0]=True
print("peak RSS MB",peak[0])
