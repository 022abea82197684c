"""A real WebDAV server for tests: wsgidav on cheroot, serving a folder with HTTP Basic auth.

    with WebDAVServer(folder, prefix="/webdav.php/client/ref_1") as server:
        server.url            # http://127.0.0.1:PORT/webdav.php/client/ref_1/
        server.username, server.password

Binds 127.0.0.1 on a free port; leaving the `with` block stops it and joins its thread.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Mapping

from cheroot import wsgi
from wsgidav.wsgidav_app import WsgiDAVApp


class WebDAVServer:
    def __init__(self, root: str | os.PathLike, *, prefix: str = "/dav",
                 username: str = "student", password: str = "s3cret-Pa$$word"):
        self.root = Path(root)
        self.prefix = "/" + prefix.strip("/")
        self.username = username
        self.password = password
        self._server: wsgi.Server | None = None
        self._thread: threading.Thread | None = None

    def _app(self) -> WsgiDAVApp:
        return WsgiDAVApp({
            "provider_mapping": {self.prefix: {"root": str(self.root), "readonly": True}},
            "simple_dc": {"user_mapping": {"*": {self.username: {"password": self.password}}}},
            "http_authenticator": {"accept_basic": True, "accept_digest": False,
                                   "default_to_digest": False, "trusted_auth_header": None},
            "verbose": 0,
            "logging": {"enable": False, "enable_loggers": []},
            "dir_browser": {"enable": False},
            "property_manager": None,
            "lock_storage": None,
        })

    def start(self) -> "WebDAVServer":
        # wsgidav configures its own logger at import; keep test output readable.
        logging.getLogger("wsgidav").setLevel(logging.ERROR)
        self._server = wsgi.Server(("127.0.0.1", 0), self._app(), numthreads=4)
        self._server.expiration_interval = 0.05  # how long stop() waits for the serve loop (default 0.5 s)
        self._server.prepare()  # binds now, so the port is known before serving
        self._thread = threading.Thread(target=self._server.serve, name="webdav-test-server", daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.bind_addr[1]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.origin}{self.prefix}/"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> "WebDAVServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def write_tree(root: str | os.PathLike, files: Mapping[str, bytes]) -> None:
    """Make `root` hold exactly `files`; files whose bytes are unchanged are not rewritten,
    so their modification time (and a server's ETag) stays as an unedited file's would.
    What is no longer wanted goes first, so a file may become a folder of the same name."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    wanted = {root / path for path in files}
    for folder, dirs, names in os.walk(root, topdown=False):
        for name in names:
            if Path(folder, name) not in wanted:
                os.unlink(os.path.join(folder, name))
        for name in dirs:
            path = Path(folder, name)
            if not any(p.is_relative_to(path) for p in wanted):
                os.rmdir(path)
    for path, content in files.items():
        target = root / path
        if target.is_file() and target.read_bytes() == content:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
