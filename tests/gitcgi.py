"""`git http-backend` as plain CGI behind Python's http.server, bound to 127.0.0.1.

What any web server would run, without f2git around it: the baseline of the load figures
(benchmarks/load.py) and, with receive-pack and a token check, the mirror host of the hub
tests (tests/hubhelpers.py).

    with GitCgiServer(repos_root) as server:
        server.url("cs101")   # http://127.0.0.1:PORT/cs101.git
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class GitCgiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: the answer ends with the connection
    server: "GitCgiServer"

    def log_message(self, *args) -> None:
        pass

    def allowed(self) -> bool:
        """Subclasses check credentials here; False answers 401."""
        return True

    def extra_env(self) -> dict[str, str]:
        """More CGI environment, e.g. REMOTE_USER and http.receivepack for a host that takes pushes."""
        return {}

    def do_GET(self) -> None:
        if not self.allowed():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.end_headers()
            return
        self.run_backend()

    do_POST = do_GET

    def read_body(self) -> bytes:
        if self.command != "POST":
            return b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0], 16)):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def run_backend(self) -> None:
        path, _, query = self.path.partition("?")
        body = self.read_body()
        env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(self.server.root), "GIT_HTTP_EXPORT_ALL": "1",
               "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
               "REMOTE_ADDR": self.client_address[0], "GIT_CONFIG_NOSYSTEM": "1",
               "GIT_CONFIG_GLOBAL": os.devnull, **self.extra_env()}
        for header, variable in (("Git-Protocol", "GIT_PROTOCOL"), ("Content-Encoding", "HTTP_CONTENT_ENCODING")):
            if self.headers.get(header):
                env[variable] = self.headers[header]
        process = subprocess.Popen(["git", "http-backend"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        # Fed from a thread: the backend may answer before it has read all of a large body.
        feeder = threading.Thread(target=lambda: (process.stdin.write(body), process.stdin.close()))
        feeder.start()
        code, headers = 200, []
        while (line := process.stdout.readline().rstrip(b"\r\n")):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "status":  # a CGI header, not an HTTP one
                code = int(value.split()[0])
            else:
                headers.append((name, value.strip()))
        self.send_response(code)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        shutil.copyfileobj(process.stdout, self.wfile, 64 * 1024)
        feeder.join()
        process.wait()


class GitCgiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, handler: type[GitCgiHandler] = GitCgiHandler):
        super().__init__(("127.0.0.1", 0), handler)
        self.root = Path(root)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}.git"

    def __enter__(self) -> "GitCgiServer":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join()
