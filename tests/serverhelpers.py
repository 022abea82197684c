"""A real f2git server for tests: the `f2git serve` app and schedule on 127.0.0.1, in a thread.

    with RunningServer(config_factory) as server:
        server.url                 # http://127.0.0.1:PORT
        server.git_url("cs101")    # http://127.0.0.1:PORT/git/cs101
        server.get_json("/api/courses")

The port is bound before the config is built, so `public_url` names the real port.
Leaving the `with` block stops the server as SIGTERM would and joins its thread.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from typing import Any, Callable

import tornado.netutil

from f2git.config import Config, parse
from f2git.server.app import Server


class RunningServer:
    def __init__(self, make_config: Callable[[int], Config], **options: Any):
        """`make_config(port)` returns the config to serve; the server listens on that port.
        `options` go to f2git.server.app.Server (e.g. `clock`)."""
        self._options = options
        self._sockets: list[socket.socket] = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = self._sockets[0].getsockname()[1]
        self.config = make_config(self.port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: Server | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None

    def git_url(self, course: str, suffix: str = "") -> str:
        return f"{self.url}/git/{course}{suffix}"

    def __enter__(self) -> "RunningServer":
        self._thread = threading.Thread(target=self._run, name="f2git-test-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the test server did not start within 30 s")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            self.server = Server(self.config, **self._options)
            await self.server.start(self._sockets)
        except BaseException as error:
            self._error = error
            self._ready.set()
            raise
        self._ready.set()
        await self._stopped.wait()
        await self.server.stop()

    def call(self, function: Callable[[], Any]) -> Any:
        """Run `function` in the server's event loop thread and return its result."""
        async def run():
            return function()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def __exit__(self, *exc_info) -> None:
        if self.loop is not None and self._stopped is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=60)
            if self._thread.is_alive():
                raise RuntimeError("the test server did not stop within 60 s; its tasks:\n" + self._tasks())

    def _tasks(self) -> str:
        """The stacks of the server loop's tasks (what a stop that hangs waits for)."""
        import io

        async def stacks() -> str:
            out = io.StringIO()
            for task in asyncio.all_tasks():
                task.print_stack(file=out)
                awaited = task.get_coro()  # the whole chain of awaits, which print_stack leaves out
                while awaited is not None:
                    frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
                    if frame is not None:
                        out.write(f"  awaiting in {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}\n")
                    awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
            return out.getvalue()
        try:
            return asyncio.run_coroutine_threadsafe(stacks(), self.loop).result(timeout=5)
        except Exception as error:  # the loop is stuck itself
            return f"(not available: {error!r})"

    # -- small HTTP client ---------------------------------------------------------------

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, Message, bytes]:
        """(status, headers (case-insensitive), body) of one request; HTTP errors are answers, not exceptions."""
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers, error.read()

    def get_json(self, path: str) -> Any:
        status, _, body = self.request("GET", path)
        assert status == 200, (status, body)
        return json.loads(body)

    def post_json(self, path: str, data: Any = None) -> tuple[int, Any]:
        body = b"" if data is None else json.dumps(data).encode()
        status, _, answer = self.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        return status, json.loads(answer)


def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> bool:
    """Poll `condition` until it holds, for state another process or thread changes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


class ManualClock:
    """A clock for TTL decisions that moves only when the test turns it."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def config_factory(folder: Path, courses: dict[str, dict], env: dict[str, str] | None = None,
                   **server: Any) -> Callable[[int], Config]:
    """A `make_config(port)` for RunningServer: the TOML tables as dicts, data in `folder`;
    `env` is the environment the config's `*_env` keys are checked against."""
    # Test clients share one address and click in quick succession as different students:
    # every click is its own unless the test sets `click_window` (the default ties them).
    server = {"click_window": 0, **server}

    def make(port: int) -> Config:
        data = {"server": {"data_dir": str(folder / "data"), "port": port, **server}, "courses": courses}
        return parse(data, folder / "f2git.toml", env or {})
    return make


def serve_local(tmp_path: Path, instructor_path: Path, course: str = "cs101", **server: Any) -> RunningServer:
    """RunningServer of one `local` course (the instructor's folder), every click refreshing."""
    courses = {course: {"source": "local", "path": str(instructor_path), "schedule": 0}}
    return RunningServer(config_factory(tmp_path, courses, **{"refresh_ttl": 0, "refresh_wait": 30, **server}))


def settled(server: RunningServer, timeout: float = 60.0) -> None:
    """Wait until the server's pack cache computes nothing (answers built ahead included)."""
    cache = server.server.app.settings["f2git_packcache"]
    assert wait_until(lambda: server.call(lambda: cache.idle), timeout), "the pack cache kept computing"
