# Helpers of the hostile-input scripts: the server (TVBASE) and its data dir (TVDATA, for the admin token).
import requests, json, sys, os, time, datetime
BASE = os.environ["TVBASE"]
DATA = os.environ["TVDATA"]
ADMIN = open(DATA + "/admin.token").read().strip()
def h(t, **kw):
    d = {"Authorization": "Bearer " + t}; d.update(kw); return d
def mint(role, ns, **kw):
    body = {"role": role, "ns": ns}; body.update(kw)
    r = requests.post(BASE + "/v1/tokens", headers=h(ADMIN), json=body)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()["token"]
def q(tok, sql, arrow=False, timeout=120):
    hd = h(tok)
    if arrow: hd["Accept"] = "application/vnd.apache.arrow.stream"
    return requests.post(BASE + "/v1/query", headers=hd, json={"sql": sql}, timeout=timeout)
def post(tok, ns, events, wait=True):
    return requests.post(BASE + f"/v1/logs/{ns}/events" + ("?wait=checkpoint" if wait else ""), headers=h(tok), json={"events": events})
