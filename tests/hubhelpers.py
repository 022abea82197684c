"""Real servers for the hub-side tests, bound to 127.0.0.1 on free ports, stopped by the test.

- `GitHost`: a second git server (`git http-backend` with receive-pack on, behind HTTP Basic
  with a token as password, the way GitLab/Gitea take tokens) — the mirror target.
- `Hub`: a real JupyterHub (dummy authenticator, simple local spawner, configurable-http-proxy
  from npm) with f2git registered as a service; students' servers are real jupyter-server
  processes with nbgitpuller and pullhook.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CHP = ROOT / ".cache" / "chp" / "node_modules" / ".bin" / "configurable-http-proxy"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def git(*args: str, cwd: Path | str | None = None, env: dict | None = None) -> str:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    full_env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_AUTHOR_NAME="t",
                    GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t",
                    GIT_COMMITTER_EMAIL="t@example.org", **(env or {}))
    return subprocess.run(["git", *args], cwd=cwd, env=full_env, check=True, capture_output=True,
                          text=True).stdout


class _GitHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: simple CGI relaying
    server: "_GitServer"

    def log_message(self, format, *args):
        pass

    def _authorised(self) -> bool:
        host = self.server.owner
        header = self.headers.get("Authorization", "")
        host.authorizations.append(header)
        if "git-upload-pack" in self.path:
            host.upload_requests.append(self.path)
            if host.public_read:
                return True
        if not host.token:
            return True
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            password = base64.b64decode(value).decode().partition(":")[2]
        except ValueError:
            return False
        return secrets.compare_digest(password, host.token)

    def _run(self):
        if not self._authorised():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="mirror"')
            self.end_headers()
            return
        body = b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().strip(), 16)
                chunk = self.rfile.read(size + 2)[:size]
                if size == 0:
                    break
                body += chunk
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query = self.path.partition("?")
        env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(self.server.owner.root),
               "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path, "QUERY_STRING": query,
               "REQUEST_METHOD": self.command, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
               "REMOTE_USER": "mirror", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
               "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.receivepack", "GIT_CONFIG_VALUE_0": "true"}
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _run


class _GitServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: "GitHost"


class GitHost:
    """`with GitHost(tmp, token) as host:` bare repos under `host.root`, URLs `host.url(name)`."""

    def __init__(self, root: Path, token: str = "", public_read: bool = False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.public_read = public_read  # fetches without a token, pushes with it (a public project)
        self.authorizations: list[str] = []  # every Authorization header received
        self.upload_requests: list[str] = []  # every fetch request (upload-pack)

    def create(self, name: str) -> Path:
        path = self.root / f"{name}.git"
        git("init", "-q", "--bare", "-b", "main", str(path))
        return path

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}.git"

    def __enter__(self) -> "GitHost":
        self.http = _GitServer(("127.0.0.1", 0), _GitHandler)
        self.http.owner = self
        self.port = self.http.server_address[1]
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join()
