"""A real HTTP file server for connector tests, bound to 127.0.0.1 on a free port.

    with FileServer() as server:
        server.put("/course.zip", data)                 # or server.put_folder(path)
        url = server.url("/course.zip")
        server.fault = "truncate"                       # misbehave from now on

It answers GET with ETag and Last-Modified, honours If-None-Match / If-Modified-Since
(304), counts requests and body bytes, and misbehaves on request:
`truncate` (fewer bytes than Content-Length, then a clean close), `reset` (part of the
body, then a TCP reset), `error` (500), `hang` (no answer until the server stops) and
`trickle` (headers at once, then one byte every `trickle_interval` s until the server stops)
and `endless` (a chunked JSON answer, at full speed, that never ends until the client goes).
"""
from __future__ import annotations

import hashlib
import json
import socket
import struct
import threading
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

FAULTS = (None, "truncate", "reset", "error", "hang", "trickle", "endless")
_EPOCH = 1_700_000_000  # Last-Modified of the first version; each change adds a second


@dataclass
class Resource:
    body: bytes
    modified: int  # epoch seconds
    content_type: str = "application/octet-stream"
    disposition: str | None = None
    send_etag: bool = True
    send_last_modified: bool = True

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_GET(self):
        owner = self.server.owner
        path = unquote(urlsplit(self.path).path)
        with owner.lock:
            owner.requests.append(Request("GET", path, dict(self.headers)))
            fault = owner.fault
            resource = owner.resources.get(path)
        if fault == "hang":
            owner.released.wait(60)
            self.close_connection = True
            return
        if fault == "error":
            return self._html(500, "<html><body>Internal Server Error</body></html>")
        if fault == "endless":
            return self._endless()
        if resource is None:
            return self._html(404, "<html><body>Not Found</body></html>")
        if self._not_modified(resource):
            self.send_response(304)
            self._validators(resource)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", resource.content_type)
        self.send_header("Content-Length", str(len(resource.body)))
        if resource.disposition:
            self.send_header("Content-Disposition", resource.disposition)
        self._validators(resource)
        self.end_headers()
        body = resource.body
        if fault in ("truncate", "reset"):
            body = body[: len(body) // 2]
        if fault == "trickle":
            return self._trickle(body)
        with owner.lock:  # counted before sending: once the client has the bytes, they are counted
            owner.bytes_sent += len(body)
        self.wfile.write(body)
        if fault == "truncate":
            self.close_connection = True
        elif fault == "reset":
            self.wfile.flush()
            # SO_LINGER 0: close() sends RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True

    def _endless(self) -> None:
        owner = self.server.owner
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        item = b'{"key": "x", "size": 1},' * 2700  # ~64 KiB per chunk
        chunk = b"%x\r\n%s\r\n" % (len(item), item)
        try:
            self.wfile.write(b'1\r\n[\r\n')
            while not owner.released.is_set():
                self.wfile.write(chunk)
                with owner.lock:
                    owner.bytes_sent += len(item)
        except OSError:  # the client gave up, as it should
            return

    def _trickle(self, body: bytes) -> None:
        owner = self.server.owner
        self.close_connection = True
        for byte in body:
            if owner.released.wait(owner.trickle_interval):
                return
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:  # the client gave up
                return
            with owner.lock:
                owner.bytes_sent += 1

    def _validators(self, resource: Resource) -> None:
        if resource.send_etag:
            self.send_header("ETag", resource.etag)
        if resource.send_last_modified:
            self.send_header("Last-Modified", formatdate(resource.modified, usegmt=True))

    def _not_modified(self, resource: Resource) -> bool:
        # RFC 9110 13.2.2: If-None-Match wins over If-Modified-Since.
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
            return resource.send_etag and (resource.etag in tags or "*" in tags)
        since = self.headers.get("If-Modified-Since")
        if since and resource.send_last_modified:
            try:
                return resource.modified <= parsedate_to_datetime(since).timestamp()
            except (TypeError, ValueError):
                return False
        return False

    def _html(self, status: int, text: str) -> None:
        send_body(self, status, text.encode(), "text/html; charset=utf-8")


def send_body(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    """A whole answer with its length, from any BaseHTTPRequestHandler of a test server."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def send_json(handler: BaseHTTPRequestHandler, status: int, data: object) -> None:
    send_body(handler, status, json.dumps(data).encode(), "application/json")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: "FileServer"


class FileServer:
    def __init__(self):
        self.lock = threading.Lock()
        self.resources: dict[str, Resource] = {}
        self.requests: list[Request] = []
        self.bytes_sent = 0
        self.fault: str | None = None
        self.trickle_interval = 1.0
        self.released = threading.Event()
        self._clock = _EPOCH
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="FileServer",
                                        daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def put(self, path: str, body: bytes, **headers) -> None:
        """Serve `body` at `path`; Last-Modified moves on only when the bytes change."""
        with self.lock:
            old = self.resources.get(path)
            if old is None or old.body != body:
                self._clock += 1
                modified = self._clock
            else:
                modified = old.modified
            self.resources[path] = Resource(body, modified, **headers)

    def put_folder(self, folder: str | Path, prefix: str = "/") -> None:
        root = Path(folder)
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            self.put(prefix + file.relative_to(root).as_posix(), file.read_bytes())

    def remove(self, path: str) -> None:
        with self.lock:
            self.resources.pop(path, None)

    def start(self) -> "FileServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.released.set()  # lets hanging handlers finish
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)

    def __enter__(self) -> "FileServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
