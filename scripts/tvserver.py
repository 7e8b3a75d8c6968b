"""A `tracevault serve` for the benchmark scripts: a fresh data directory
with a config file, the server started and waited for, tokens minted with
the CLI, JSON requests; everything removed when the `with` block ends."""
import http.client
import json
import os
import shutil
import subprocess
import tempfile


class Server:
    def __init__(self, binary, port, config_text="", prefix="tv-"):
        self.binary, self.port = binary, port
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.data = os.path.join(self.work, "d")
        self.config = os.path.join(self.work, "c.toml")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data", self.data, "--listen", f"127.0.0.1:{self.port}",
             "--config", self.config],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in self.proc.stdout:
            if line.startswith("listening on"):
                return self
        raise RuntimeError("the server did not start")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.work, ignore_errors=True)

    def admin(self):
        with open(os.path.join(self.data, "admin.token")) as f:
            return f.read().strip()

    def token(self, role, sub, ns, *extra):
        return subprocess.run(
            [self.binary, "token", "issue", "--data", self.data, "--role", role, "--namespace", ns,
             "--sub", sub, "--ttl", "2h", *extra],
            capture_output=True, text=True, check=True).stdout.strip()

    def request(self, method, path, token=None, body=None, timeout=120):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"Content-Type": "application/json"}
        if token:
            h["Authorization"] = "Bearer " + token
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data
