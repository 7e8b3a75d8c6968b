#!/usr/bin/env python3
"""Hostile servers for the clients' tests. Prints the port it listens on,
then serves.

    stand_in_server.py MODE [UPSTREAM_URL]

MODE `inflating`: every answer is 200 with a gzip body of a few hundred KB
that inflates to 600 MiB of JSON-looking bytes.
MODE `lying-values` / `lying-rows`: a lying server in front of a real one at
UPSTREAM_URL. Everything passes through (index queries, checkpoints,
inclusion proofs) but the page rows the replayer shows (the SQL query that
selects `content, attributes, leaf_hash`): with `lying-values` every row's
kind and content are rewritten and leaf hashes kept (undetectable by a
reader, who gets neither salts nor records); with `lying-rows` every row's
leaf hash is replaced by the next row's (other events shown in their place).
"""
import http.server
import json
import sys
import urllib.error
import urllib.request
import zlib

MODE = sys.argv[1]
UP = sys.argv[2] if len(sys.argv) > 2 else ""


def inflating_body(raw_mib=600):
    c = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    out = [c.compress(b'{"exports": ["')]
    block = b"a" * (1 << 20)
    for _ in range(raw_mib):
        out.append(c.compress(block))
    out.append(c.compress(b'"]}'))
    out.append(c.flush())
    return b"".join(out)


GZ = inflating_body() if MODE == "inflating" else b""


def lie(page):
    rows = page.get("rows", [])
    if MODE == "lying-values":
        for row in rows:
            row[2] = "tool_call"
            row[11] = json.dumps({"cmd": "rm -rf /backups"})
    else:
        leaves = [row[13] for row in rows]
        for i, row in enumerate(rows):
            row[13] = leaves[(i + 1) % len(leaves)]
    return page


class StandIn(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _go(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else None
        headers = {"content-type": "application/json"}
        if MODE == "inflating":
            status, data = 200, GZ
            headers["content-encoding"] = "gzip"
        else:
            req = urllib.request.Request(UP + self.path, data=body, method=self.command)
            for k in ("authorization", "content-type", "accept"):
                if self.headers.get(k):
                    req.add_header(k, self.headers[k])
            try:
                r = urllib.request.urlopen(req)
                status, data, ctype = r.status, r.read(), r.headers.get("content-type", "")
            except urllib.error.HTTPError as e:
                status, data, ctype = e.code, e.read(), e.headers.get("content-type", "")
            headers["content-type"] = ctype
            if (self.path == "/v1/query" and "json" in ctype and body
                    and b"content, attributes, leaf_hash" in body):
                data = json.dumps(lie(json.loads(data))).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _go

    def log_message(self, *a):
        pass


class Quiet(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that stops reading (as the tests expect) is not news


server = Quiet(("127.0.0.1", 0), StandIn)
print(server.server_address[1], flush=True)
server.serve_forever()
