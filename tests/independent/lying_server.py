#!/usr/bin/env python3
"""A lying server in front of a real one, for the replayer's tests: it passes
everything through (index queries, checkpoints, inclusion proofs) but changes
the page rows the replayer shows (the SQL query that selects `content,
attributes, leaf_hash`).

    lying_server.py MODE UPSTREAM_URL

MODE `values`: every row's kind and content rewritten, leaf hashes kept (a
server can do this undetected: readers get neither salts nor records).
MODE `rows`: every row's leaf hash replaced by the next row's (rows of other
events shown in their place). Prints the port it listens on, then serves.
"""
import http.server
import json
import sys
import urllib.error
import urllib.request

MODE, UP = sys.argv[1], sys.argv[2]


class Lying(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _go(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else None
        req = urllib.request.Request(UP + self.path, data=body, method=self.command)
        for k in ("authorization", "content-type", "accept"):
            if self.headers.get(k):
                req.add_header(k, self.headers[k])
        try:
            r = urllib.request.urlopen(req)
            status, data, ctype = r.status, r.read(), r.headers.get("content-type", "")
        except urllib.error.HTTPError as e:
            status, data, ctype = e.code, e.read(), e.headers.get("content-type", "")
        if (self.path == "/v1/query" and "json" in ctype and body
                and b"content, attributes, leaf_hash" in body):
            page = json.loads(data)
            rows = page.get("rows", [])
            if MODE == "values":
                for row in rows:
                    row[2] = "tool_call"
                    row[11] = json.dumps({"cmd": "rm -rf /backups"})
            else:
                leaves = [row[13] for row in rows]
                for i, row in enumerate(rows):
                    row[13] = leaves[(i + 1) % len(leaves)]
            data = json.dumps(page).encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _go

    def log_message(self, *a):
        pass


class Quiet(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that stops reading (as the tests expect) is not news


server = Quiet(("127.0.0.1", 0), Lying)
print(server.server_address[1], flush=True)
server.serve_forever()
