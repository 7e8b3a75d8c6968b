"""moto's S3 server with every request handled one at a time.

moto checks S3 conditional writes (If-None-Match: *, If-Match) and then
stores the object without a lock, and `moto_server` serves requests on
threads: two racing create-only writes can both win (seen in CI). The
fencing and conditional-write tests need the atomicity S3 gives, so this
runs moto's own WSGI application on a threaded server (keep-alive
connections stay usable) behind one lock held for the whole request.

Usage: python moto_serial.py HOST PORT
"""

import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

LOCK = threading.Lock()
APP = DomainDispatcherApplication(create_backend_app)


def serial(environ, start_response):
    with LOCK:
        # The body is produced inside the lock too.
        return [b"".join(APP(environ, start_response))]


if __name__ == "__main__":
    run_simple(sys.argv[1], int(sys.argv[2]), serial, threaded=True,
               request_handler=MotoRequestHandler)
