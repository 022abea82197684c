"""Read-only git smart HTTP: `git http-backend` (CGI) behind tornado, streamed both ways.

    GET  /git/<course>[.git]/info/refs?service=git-upload-pack   refreshes the course first
    POST /git/<course>[.git]/git-upload-pack
    …/git-receive-pack                                           403

Request bodies (chunked or gzipped by git) are piped into the backend as they arrive, and
its output (the pack) is flushed to the client as it is produced; nothing is buffered whole.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import signal
from typing import Any

import tornado.iostream
import tornado.web

from f2git.config import CourseConfig
from f2git.store import git_command

from .base import BaseHandler, Refusal

log = logging.getLogger("f2git.git")

UPLOAD_PACK = "git-upload-pack"
LS_REFS = b"0014command=ls-refs"  # how protocol v2 starts an ls-remote's POST (never gzipped: small)
RECEIVE_PACK = "git-receive-pack"
# Set through the environment so no repo config can turn them off: no pushes, and clients
# see HEAD and main only (the sync state lives in refs/f2git/state).
BACKEND_CONFIG = (
    ("http.receivepack", "false"),
    ("uploadpack.hideRefs", "refs/"),
    ("uploadpack.hideRefs", "!refs/heads/main"),
)
# The backend gets this much of the server's environment, never the sources' secrets.
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "GIT_EXEC_PATH")
_GIT_PROTOCOL = re.compile(r"^[\x20-\x7e]{1,256}$")
READ_SIZE = 64 * 1024
MAX_ERROR_CHARS = 1000  # a pkt-line holds at most 65516 bytes; a student reads one line


def pkt_line(text: str) -> bytes:
    data = text.encode()
    return b"%04x" % (len(data) + 4) + data


# A course without a snapshot advertises `main` at this id, which names no object: `git
# ls-remote` succeeds (nbgitpuller hides its errors), and the fetch that follows fails with
# the reason, which nbgitpuller streams to the student's page (docs/ARCHITECTURE.md).
PLACEHOLDER = hashlib.sha1(b"f2git: this course has no snapshot yet").hexdigest()
# What upload-pack offers, so that shallow clones get as far as the fetch that fails.
PLACEHOLDER_CAPABILITIES = "multi_ack_detailed side-band-64k ofs-delta shallow no-progress symref=HEAD:refs/heads/main agent=f2git"


def placeholder_advertisement() -> bytes:
    """A protocol v0 info/refs answer (git clients asking for v2 accept it) naming PLACEHOLDER."""
    return (pkt_line(f"# service={UPLOAD_PACK}\n") + b"0000"
            + pkt_line(f"{PLACEHOLDER} HEAD\0{PLACEHOLDER_CAPABILITIES}\n")
            + pkt_line(f"{PLACEHOLDER} refs/heads/main\n") + b"0000")


def fetch_error(message: str) -> bytes:
    """A pkt-line git prints as `remote error: <message>` wherever it reads one."""
    line = " ".join(message.split())[:MAX_ERROR_CHARS]
    return pkt_line(f"ERR {line}\n")


def backend_env(config_repos_dir: str, course: str, action: str, request: Any) -> dict[str, str]:
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env.update({
        "GIT_PROJECT_ROOT": config_repos_dir,
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": f"/{course}.git/{action}",
        "QUERY_STRING": request.query,
        "REQUEST_METHOD": request.method,
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "REMOTE_ADDR": request.remote_ip or "",
        "GIT_CONFIG_COUNT": str(len(BACKEND_CONFIG)),
    })
    for index, (key, value) in enumerate(BACKEND_CONFIG):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    protocol = request.headers.get("Git-Protocol", "")
    if _GIT_PROTOCOL.match(protocol):
        env["GIT_PROTOCOL"] = protocol
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        env["HTTP_CONTENT_ENCODING"] = encoding  # the backend inflates it
    return env


class Backend:
    """One `git http-backend` run. Its output has exactly one reader: the relay that streams
    it to the client, or, when no relay runs, the reaper."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.stderr = asyncio.get_running_loop().create_task(self._read_stderr())
        self.reaped: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._claimed = False

    def claim_output(self) -> bool:
        """True for the first caller only: it reads stdout to the end and then reaps."""
        if self._claimed:
            return False
        self._claimed = True
        return True

    def kill(self) -> None:
        if self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def reap(self) -> int:
        """Kill the group if it still runs and wait for it, by the holder of the output.

        asyncio's wait() returns only once every pipe has closed, and a full pipe nobody
        reads never closes: read what is left first (nothing writes after the kill)."""
        self.kill()
        while await self.process.stdout.read(READ_SIZE):
            pass
        code = await self.process.wait()
        await asyncio.gather(self.stderr, return_exceptions=True)
        if not self.reaped.done():
            self.reaped.set_result(code)
        return code

    async def _read_stderr(self) -> bytes:
        tail = b""
        while chunk := await self.process.stderr.read(READ_SIZE):
            tail = (tail + chunk)[-4096:]
        return tail

    async def stderr_text(self) -> str:
        try:
            tail = await asyncio.wait_for(asyncio.shield(self.stderr), timeout=5)
        except asyncio.TimeoutError:
            tail = b""
        return tail.decode("utf-8", "replace").strip() or "(no error output)"


class Backends:
    """Every running `git http-backend`, so none outlives its request or the server."""

    def __init__(self, limit: int = 0) -> None:
        self._running: set[Backend] = set()
        self._reapers: set[asyncio.Task] = set()
        # A herd of clicks queues here instead of running hundreds of pack-objects at once.
        self.limit = limit or 4 * (os.cpu_count() or 1)
        self._slots = asyncio.Semaphore(self.limit)

    def __len__(self) -> int:
        return len(self._running)

    async def spawn(self, env: dict[str, str]) -> Backend:
        await self._slots.acquire()
        try:
            # Its own process group: git runs http-backend, which runs upload-pack and
            # pack-objects; killing the group ends them all, not just the first.
            process = await asyncio.create_subprocess_exec(
                *git_command("http-backend"), env=env, start_new_session=True,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except BaseException:
            self._slots.release()
            raise
        backend = Backend(process)
        self._running.add(backend)

        def reaped(_: asyncio.Future) -> None:
            self._running.discard(backend)
            self._slots.release()

        backend.reaped.add_done_callback(reaped)
        return backend

    def end(self, backend: Backend) -> None:
        """Its client is gone: kill it; whoever holds the output reaps it."""
        if backend.claim_output():
            task = asyncio.get_running_loop().create_task(backend.reap())
            self._reapers.add(task)
            task.add_done_callback(self._reapers.discard)
        else:
            backend.kill()  # the relay reads to the end and reaps

    async def close(self, timeout: float = 30) -> None:
        running = list(self._running)
        for backend in running:
            self.end(backend)
        if running:
            await asyncio.wait([backend.reaped for backend in running], timeout=timeout)


@tornado.web.stream_request_body
class GitHandler(BaseHandler):
    backend: Backend | None = None
    _stdin_open = False
    _client_gone = False
    _body_start = b""  # a POST's first bytes: protocol v2's ls-refs, or a fetch

    @property
    def backends(self) -> Backends:
        return self.settings["f2git_backends"]

    async def prepare(self) -> None:
        action = self.path_kwargs["action"]
        service = self.get_query_argument("service", "")
        if RECEIVE_PACK in (action, service):
            raise Refusal(403, "this repository is read-only: f2git does not accept pushes")
        await super().prepare()
        self.course = self.resolve_course(self.path_kwargs["repo"])
        self.require_fetch(self.course)
        if action == "info/refs":
            if self.request.method != "GET":
                raise Refusal(405, "info/refs answers GET only")
            if service != UPLOAD_PACK:
                raise Refusal(403, "only git's smart HTTP protocol is served (service=git-upload-pack)")
        elif self.request.method != "POST":
            raise Refusal(405, f"{action} answers POST only")
        elif await self.refresher.has_snapshot(self.course.name):
            # Start now, so the request body streams into the backend as it arrives.
            await self.start_backend()

    def resolve_course(self, repo: str) -> CourseConfig:
        """`cs101.git` and `cs101` name the same course."""
        if repo.endswith(".git") and repo[:-4] in self.config.courses:
            return self.config.courses[repo[:-4]]
        return self.find_course(repo)

    async def start_backend(self) -> None:
        env = backend_env(str(self.config.repos_dir), self.course.name, self.path_kwargs["action"], self.request)
        self.backend = await self.backends.spawn(env)
        self._stdin_open = True

    async def data_received(self, chunk: bytes) -> None:
        if len(self._body_start) < len(LS_REFS):
            self._body_start += chunk[:len(LS_REFS) - len(self._body_start)]
        if not self._stdin_open or self.backend is None:
            return
        stdin = self.backend.process.stdin
        try:
            stdin.write(chunk)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            # The backend stopped reading (it answered an error); its output says why.
            self._stdin_open = False

    async def get(self, repo: str, action: str) -> None:
        await self.refresher.on_click(self.course, self.click_client())
        if not await self.refresher.has_snapshot(self.course.name):
            self.answer_no_snapshot()
            return
        await self.start_backend()
        await self.relay()

    async def post(self, repo: str, action: str) -> None:
        if not self._body_start.startswith(LS_REFS):  # a fetch: the last git request of a click
            self.refresher.click_fetched(self.course.name, self.click_client())
        if self.backend is None:  # no snapshot: the fetch after a placeholder advertisement
            self.answer_no_snapshot()
            return
        await self.relay()

    def answer_no_snapshot(self) -> None:
        last = self.refresher.last_error(self.course.name)
        if self.refresher.is_running(self.course.name):
            reason = "the first sync is still running, try again in a minute"
        elif last and not self.auth.may_manage(self.identity, self.course):
            reason = "the last sync failed; your instructor sees why in f2git's dashboard"  # errors name sources
        else:
            reason = last or "no sync has run yet"
        message = f"course {self.course.name} has no snapshot yet: {reason}"
        log.info("%s (answered to %s)", message, self.request.remote_ip)
        # Status 200: git reads the body only then. info/refs names a placeholder, so that
        # ls-remote succeeds; the fetch's POST gets the reason, which git prints to the student.
        self.set_header("Cache-Control", "no-cache")
        if self.request.method == "GET":
            self.set_header("Content-Type", f"application/x-{UPLOAD_PACK}-advertisement")
            self.finish(placeholder_advertisement())
        else:
            self.set_header("Content-Type", f"application/x-{UPLOAD_PACK}-result")
            self.finish(fetch_error(message))

    async def relay(self) -> None:
        """Close the backend's input, then stream its CGI answer to the client."""
        backend = self.backend
        assert backend is not None
        if not backend.claim_output():
            return  # the client left before its body was in; the backend is being reaped
        stdout = backend.process.stdout
        try:
            await self._close_stdin()
            try:
                head = await stdout.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                if self._client_gone:
                    return
                raise Refusal(502, "git http-backend failed: " + await backend.stderr_text()) from None
            self._apply_cgi_headers(head)
            while chunk := await stdout.read(READ_SIZE):
                self.write(chunk)
                await self.flush()
            if not self._client_gone:
                self.finish()
        except tornado.iostream.StreamClosedError:
            self._client_gone = True
        finally:
            code = await backend.reap()
            if self._client_gone:
                log.info("course %s: client %s went away during %s", self.course.name,
                         self.request.remote_ip, self.path_kwargs["action"])
            elif code not in (0, -signal.SIGKILL):  # killed: the server is stopping
                log.warning("course %s: git http-backend exited with %s: %s",
                            self.course.name, code, await backend.stderr_text())

    async def _close_stdin(self) -> None:
        if self._stdin_open:
            self._stdin_open = False
            stdin = self.backend.process.stdin
            try:
                stdin.close()
                await stdin.wait_closed()
            except (BrokenPipeError, ConnectionResetError):
                pass

    def _apply_cgi_headers(self, head: bytes) -> None:
        for line in head.decode("latin-1").split("\r\n"):
            if not line:
                continue
            name, _, value = line.partition(":")
            name, value = name.strip(), value.strip()
            if name.lower() == "status":  # a CGI header, not an HTTP one
                code, _, reason = value.partition(" ")
                self.set_status(int(code), reason or None)
            else:
                self.set_header(name, value)

    def on_connection_close(self) -> None:
        # Also called when the client leaves mid-upload, where post() never runs.
        self._client_gone = True
        if self.backend is not None and not self.backend.reaped.done():
            self.backends.end(self.backend)
        super().on_connection_close()


ROUTES = [
    (r"/git/(?P<repo>[^/]+)/(?P<action>info/refs|git-upload-pack|git-receive-pack)", GitHandler),
]
