"""The `responses` LMS fakes (tests/canvasfake.py, moodlefake.py, …) served over real HTTP, for
tests where f2git runs in another process (a hub service).

    served = ServedFake([canvasfake.BASE, canvasfake.FILES_HOST])
    fake = FakeCanvas(served)          # the fake registers its routes here instead of in a RequestsMock
    with served:
        served.url(canvasfake.BASE)    # http://127.0.0.1:PORT, where f2git finds that host

Each upstream origin gets its own port on 127.0.0.1 (so credentials stay bound to their host,
as with the real LMS); every upstream origin in answers (bodies, Location, Link) is rewritten to
its local URL. `failing` answers every request with that status while set.
"""
from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


class _Request:
    """What the fakes' callbacks read of a request (as `requests.PreparedRequest` has it)."""

    def __init__(self, method: str, url: str, headers: dict[str, str], body: str | None):
        self.method, self.url, self.headers, self.body = method, url, headers, body


class ServedFake:
    def __init__(self, origins: list[str]):
        self.routes: list[tuple[str, Any, Callable]] = []
        self.servers: dict[str, ThreadingHTTPServer] = {}
        self.locals: dict[str, str] = {}
        self.lock = threading.Lock()  # the fakes are not thread-safe; neither is a RequestsMock's use of them
        for origin in origins:
            server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(origin))
            server.daemon_threads = True
            self.servers[origin] = server
            self.locals[origin] = f"http://127.0.0.1:{server.server_address[1]}"
        self.threads: list[threading.Thread] = []

    # -- what a RequestsMock offers the fakes ---------------------------------------------------

    def add_callback(self, method: str, url: Any, callback: Callable, **_: Any) -> None:
        self.routes.append((method, url, callback))

    def add(self, method: str, url: Any, body: str = "", content_type: str = "text/plain", status: int = 200,
            **_: Any) -> None:
        self.routes.append((method, url, lambda request: (status, {"Content-Type": content_type}, body)))

    # -- serving --------------------------------------------------------------------------------

    def url(self, origin: str) -> str:
        return self.locals[origin]

    def localise(self, text: str) -> str:
        for origin, local in self.locals.items():
            text = text.replace(origin, local)
        return text

    def answer(self, method: str, url: str, headers: dict[str, str], body: str | None) -> tuple[int, dict, bytes]:
        for route_method, pattern, callback in self.routes:
            matches = pattern.match(url) if isinstance(pattern, re.Pattern) else url.partition("?")[0] == pattern
            if route_method == method and matches:
                with self.lock:
                    status, answer_headers, answer = callback(_Request(method, url, headers, body))
                if isinstance(answer, str):
                    answer = self.localise(answer).encode()
                return status, {k: self.localise(str(v)) for k, v in answer_headers.items()}, answer
        return 404, {"Content-Type": "text/plain"}, b"no such route in the fake"

    def _handler(self, origin: str) -> type:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else None
                status, headers, answer = owner.answer(self.command, origin + self.path, dict(self.headers), body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = _serve

        return Handler

    def __enter__(self) -> "ServedFake":
        for server in self.servers.values():
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()
