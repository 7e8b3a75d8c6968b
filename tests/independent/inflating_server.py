#!/usr/bin/env python3
"""A hostile server for the client's tests: every answer is 200 with a gzip
body of a few hundred KB that inflates to 600 MiB of JSON-looking bytes.
Prints the port it listens on, then serves."""
import http.server
import zlib

RAW_MIB = 600


def body():
    c = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    out = [c.compress(b'{"exports": ["')]
    block = b"a" * (1 << 20)
    for _ in range(RAW_MIB):
        out.append(c.compress(block))
    out.append(c.compress(b'"]}'))
    out.append(c.flush())
    return b"".join(out)


GZ = body()


class Inflating(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _go(self):
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-encoding", "gzip")
        self.send_header("content-length", str(len(GZ)))
        self.end_headers()
        self.wfile.write(GZ)

    do_GET = do_POST = _go

    def log_message(self, *a):
        pass


class Quiet(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that stops reading (as the tests expect) is not news


server = Quiet(("127.0.0.1", 0), Inflating)
print(server.server_address[1], flush=True)
server.serve_forever()
