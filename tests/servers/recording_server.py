"""A hostile single-user server: what mallory runs at /user/mallory/ on a shared hub.

The hub starts it like any user's server (it listens where $JUPYTERHUB_SERVICE_URL says).
It answers every request 200 with what pullhook's `/remote` would accept, and appends
each request line and its headers as one JSON line to $HOME/requests.jsonl, so a test
can see whether anyone's token reached it.
"""
from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

LOG = Path(os.environ.get("HOME", ".")) / "requests.jsonl"
ANSWER = b'{"course": "cs101", "git_url": "", "mirror": null}'


class Recorder(BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def answer(self) -> None:
        with LOG.open("a") as log:
            log.write(json.dumps({"method": self.command, "path": self.path, "headers": dict(self.headers)}) + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    do_GET = do_POST = do_HEAD = answer


if __name__ == "__main__":
    where = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    ThreadingHTTPServer((where.hostname, where.port), Recorder).serve_forever()
