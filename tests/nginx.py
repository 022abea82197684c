"""nginx (Debian's) serving a folder on 127.0.0.1, for the `http` connector's tests: its
own ETag ("<mtime>-<size>" in hex), Last-Modified, 304s, Range and redirects.

    with Nginx(tmp_path) as web:
        (web.root / "course.zip").write_bytes(...)
        web.url("/course.zip"); web.log_lines()   # the access log: "<status> <bytes> range=<Range> <request>"

One process (master_process off), no daemon, every path inside its own folder.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.realserver import ServerProcess, free_port

CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    types {{ application/zip zip; application/gzip gz tgz; text/plain txt; text/html html; }}
    default_type application/octet-stream;
    log_format status '$status $body_bytes_sent range=$http_range $request';
    access_log {prefix}/access.log status;
    client_body_temp_path {prefix}/tmp; proxy_temp_path {prefix}/tmp; fastcgi_temp_path {prefix}/tmp;
    uwsgi_temp_path {prefix}/tmp; scgi_temp_path {prefix}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /no-etag/ {{ etag off; }}
        location = /moved/course.zip {{ return 301 /course.zip; }}
        location = /elsewhere/notes.txt {{ return 302 http://127.0.0.1:{port}/notes.txt; }}
        location = /loop {{ return 302 /loop; }}
    }}
}}
"""


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


class Nginx(ServerProcess):
    def __init__(self, folder: str | os.PathLike):
        self.prefix = Path(folder)
        self.root = self.prefix / "www"
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.root.mkdir(exist_ok=True)
        port = free_port()
        config = self.prefix / "nginx.conf"
        config.write_text(CONFIG.format(prefix=self.prefix, root=self.root, port=port))
        super().__init__([nginx_binary(), "-p", str(self.prefix), "-c", str(config)], port)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log_lines(self) -> list[str]:
        log = self.prefix / "access.log"
        return log.read_text().splitlines() if log.exists() else []
