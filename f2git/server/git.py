"""Read-only git smart HTTP: `git http-backend` (CGI) behind tornado, its answers shared.

    GET  /git/<course>[.git]/info/refs?service=git-upload-pack   refreshes the course first
    POST /git/<course>[.git]/git-upload-pack
    …/git-receive-pack                                           403

A request body is read whole first (bounded in bytes, gzip inflated here with a cap, `have`
lines counted); only then does git get a backend slot. Git writes its answer to the pack
cache (packcache.py), and clients are streamed from there: identical requests share one
run, and a client that reads slowly holds a connection, never a backend.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import signal
import time
import zlib
from datetime import timedelta
from typing import AsyncIterator, Awaitable, Callable

import tornado.gen
import tornado.iostream
import tornado.web

from f2git.config import Config, CourseConfig
from f2git.release import pins_stamp
from f2git.store import git_command

from . import rewritenotice
from .base import BaseHandler, Refusal
from .packcache import CHUNK, GitRequest, PackCache, Reader
from .refresh import Refresher

log = logging.getLogger("f2git.git")

UPLOAD_PACK = "git-upload-pack"
LS_REFS = b"0014command=ls-refs"  # how protocol v2 starts an ls-remote's POST (never gzipped: small)
RECEIVE_PACK = "git-receive-pack"
# Set through the environment so no repo config can turn them off: no pushes, and clients
# see HEAD, main and the pins release/* only (the sync state lives in refs/f2git/state).
BACKEND_CONFIG = (
    ("http.receivepack", "false"),
    ("uploadpack.hideRefs", "refs/"),
    ("uploadpack.hideRefs", "!refs/heads/main"),
    ("uploadpack.hideRefs", "!refs/heads/release/"),  # pins (f2git/release.py), snapshots of main
)
# The backend gets this much of the server's environment, never the sources' secrets.
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "GIT_EXEC_PATH")
_GIT_PROTOCOL = re.compile(r"^[\x20-\x7e]{1,256}$")
# A fetch request is wants, haves and a few capabilities: kilobytes. These bound what one
# request may make f2git (and git) hold, whatever a client claims.
MAX_REQUEST_BODY = 2 * 1024 * 1024  # as sent (gzip or plain)
MAX_DECODED_BODY = 2 * 1024 * 1024  # once inflated
MAX_HAVES = 10_000
MAX_WANTS = 100  # git wants main: one line
STALL_TIMEOUT = 60.0
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


def backend_env(repos_dir: str, request: GitRequest) -> dict[str, str]:
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env.update({
        "GIT_PROJECT_ROOT": repos_dir,
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": f"/{request.course}.git/{request.action}",
        "QUERY_STRING": request.query,
        "REQUEST_METHOD": request.method,
        "CONTENT_TYPE": request.content_type,
        "REMOTE_ADDR": "127.0.0.1",  # one run answers many clients
        "GIT_CONFIG_COUNT": str(len(BACKEND_CONFIG)),
    })
    if request.method == "POST":
        env["CONTENT_LENGTH"] = str(len(request.body))
    for index, (key, value) in enumerate(BACKEND_CONFIG):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    if request.protocol:
        env["GIT_PROTOCOL"] = request.protocol
    return env


class Backends:
    """The backend slots, and every running `git http-backend`, so none outlives the server."""

    def __init__(self, limit: int = 0, stall_timeout: float = STALL_TIMEOUT) -> None:
        self._running: set[asyncio.subprocess.Process] = set()
        self._starting: set[asyncio.Future] = set()  # git processes being started (never cancelled)
        # A herd of clicks queues here instead of running hundreds of pack-objects at once.
        self.limit = limit or 4 * (os.cpu_count() or 1)
        self._slots = asyncio.Semaphore(self.limit)
        self.stall_timeout = stall_timeout  # s a client may read nothing before it is dropped
        self.spawned = 0
        self.queued = 0  # runs waiting for a slot
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def __len__(self) -> int:
        return len(self._running)

    def overloaded(self) -> bool:
        """Every slot busy and a full round of runs queued behind them."""
        return self.queued >= self.limit

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the `limit` slots, waited for in turn (counted in `queued` meanwhile)."""
        self.queued += 1
        try:
            await self._slots.acquire()
        finally:
            self.queued -= 1
        try:
            yield
        finally:
            self._slots.release()

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    async def run(self, env: dict[str, str], body: bytes, write: Callable[[bytes], None]) -> str | None:
        """Run one backend in a slot with `body` as input; its output goes to `write`.
        None when it succeeded, else why not."""
        async with self.slot():
            # Its own process group: git runs http-backend, which runs upload-pack and
            # pack-objects; killing the group ends them all, not just the first.
            spawn = asyncio.ensure_future(asyncio.create_subprocess_exec(
                *git_command("http-backend"), env=env, start_new_session=True,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE))
            self._starting.add(spawn)
            spawn.add_done_callback(self._starting.discard)
            try:
                process = await asyncio.shield(spawn)
            except asyncio.CancelledError:
                # Cancelled while git starts (the server stops): asyncio's own clean-up of a start cut
                # short can wait forever (CPython 3.11). Let it start, then end its whole group;
                # close() waits for such starts, so the loop's shutdown never cancels one.
                spawn.add_done_callback(_kill_once_started)
                raise
            self.spawned += 1
            self._running.add(process)
            loop = asyncio.get_running_loop()
            stderr = loop.create_task(_tail(process.stderr))
            feeder = loop.create_task(_feed(process.stdin, body))
            try:
                while chunk := await process.stdout.read(CHUNK):
                    write(chunk)
                code = await process.wait()
            finally:
                try:
                    _kill(process)
                    # wait() may return only once every pipe has closed: drain what is left.
                    while await process.stdout.read(CHUNK):
                        pass
                    code = await process.wait()
                    await asyncio.gather(stderr, feeder, return_exceptions=True)
                finally:  # also when cancelled here (the server stops): close() must not wait for it
                    self._running.discard(process)
        if code == 0:
            return None
        text = stderr.result().decode("utf-8", "replace").strip() or "(no error output)"
        log.warning("course %s: git http-backend exited with %s: %s", env["PATH_INFO"], code, text)
        return f"git http-backend exited with {code}: {text}"

    async def close(self, timeout: float = 30) -> None:
        for closer in self._closers:
            await closer()
        if self._starting:
            await asyncio.wait(list(self._starting), timeout=timeout)
        for process in list(self._running):
            _kill(process)
        deadline = time.monotonic() + timeout
        while self._running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # their runs reap them


def _kill_once_started(spawn: asyncio.Future) -> None:
    if not spawn.cancelled() and spawn.exception() is None:
        _kill(spawn.result())


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def _tail(stream: asyncio.StreamReader) -> bytes:
    tail = b""
    while chunk := await stream.read(CHUNK):
        tail = (tail + chunk)[-4096:]
    return tail


async def _feed(stdin: asyncio.StreamWriter, body: bytes) -> None:
    try:
        stdin.write(body)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the backend stopped reading (it answered an error); its output says why


def make_pack_cache(config: Config, backends: Backends, refresher: Refresher) -> PackCache:
    """The server's pack cache, fed by `backends`, told of every new snapshot, closed with them."""
    repos = str(config.repos_dir)

    async def run(request: GitRequest, write: Callable[[bytes], None]) -> str | None:
        return await backends.run(backend_env(repos, request), request.body, write)

    cache = PackCache(config.server.data_dir / "packcache", config.repos_dir, list(config.courses),
                      config.server.pack_cache_size, run)
    cache.refs_of = lambda course: pins_stamp(config.repos_dir / f"{course}.git")
    refresher.on_result(lambda result: cache.snapshot_published(result.course) if result.ok else None)
    backends.on_close(cache.close)
    return cache


def decode_body(raw: bytes, encoding: str) -> bytes:
    """The request body as git wrote it: gzip inflated here, never past MAX_DECODED_BODY."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        body = raw
    elif encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(wbits=31)
        try:
            body = inflater.decompress(raw, MAX_DECODED_BODY + 1)
        except zlib.error:
            raise Refusal(400, "the request body is not valid gzip") from None
        if not inflater.eof and len(body) <= MAX_DECODED_BODY:
            raise Refusal(400, "the request body's gzip stream is cut short")
    else:
        raise Refusal(415, f"request bodies are accepted plain or gzip, not {encoding[:40]!r}")
    if len(body) > MAX_DECODED_BODY:
        raise Refusal(413, f"the git request is larger than {MAX_DECODED_BODY // 1024} KiB once inflated")
    return body


def check_request(body: bytes) -> set[str]:
    """A sequence of pkt-lines with at most MAX_HAVES `have` lines; returns the commits it wants."""
    wants: set[str] = set()
    haves, at = 0, 0
    while at < len(body):
        try:
            length = int(body[at:at + 4], 16)
        except ValueError:
            raise Refusal(400, "the git request is not made of pkt-lines") from None
        if length < 4:
            at += 4  # flush, delim, response-end
            continue
        if at + length > len(body):
            raise Refusal(400, "the git request ends inside a pkt-line")
        haves += body.startswith(b"have ", at + 4)
        if body.startswith(b"want ", at + 4):
            wants.add(body[at + 9:at + 49].decode("latin-1"))
            if len(wants) > MAX_WANTS:
                raise Refusal(413, f"the git request wants more than {MAX_WANTS} objects")
        at += length
    if haves > MAX_HAVES:
        raise Refusal(413, f"the git request names {haves} local commits (have lines); f2git accepts "
                           f"at most {MAX_HAVES}: fetch into a fresh clone")
    return wants


@tornado.web.stream_request_body
class GitHandler(BaseHandler):
    _client_gone = False
    refused = ""  # why the asker may not fetch (members = "lms"): answered in git's words
    _notice: str | None = None
    _sideband = False
    _body: bytearray | None = None
    _body_too_large = False

    @property
    def backends(self) -> Backends:
        return self.settings["f2git_backends"]

    @property
    def cache(self) -> PackCache:
        return self.settings["f2git_packcache"]

    async def prepare(self) -> None:
        action = self.path_kwargs["action"]
        service = self.get_query_argument("service", "")
        if RECEIVE_PACK in (action, service):
            raise Refusal(403, "this repository is read-only: f2git does not accept pushes")
        await super().prepare()
        self.course = self.resolve_course(self.path_kwargs["repo"])
        try:
            await self.admit(self.course)
        except Refusal as refusal:
            if refusal.status_code != 403 or self.course.members != "lms":
                raise
            # git shows no answer to info/refs; the fetch that follows carries the reason (see refused_answer)
            self.refused = refusal.message
        if action == "info/refs":
            if self.request.method != "GET":
                raise Refusal(405, "info/refs answers GET only")
            if service != UPLOAD_PACK:
                raise Refusal(403, "only git's smart HTTP protocol is served (service=git-upload-pack)")
        elif self.request.method != "POST":
            raise Refusal(405, f"{action} answers POST only")
        else:
            declared = self.request.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_REQUEST_BODY:
                raise Refusal(413, f"the git request is larger than {MAX_REQUEST_BODY // 1024} KiB")
            # A chunked body past the cap is counted, not kept; far past it the connection ends.
            self.request.connection.set_max_body_size(4 * MAX_REQUEST_BODY)
            self._body = bytearray()

    def resolve_course(self, repo: str) -> CourseConfig:
        """`/git/cs101.git` and `/git/cs101` name course cs101; no course name ends in .git."""
        return self.find_course(repo[:-4] if repo.endswith(".git") else repo)

    def data_received(self, chunk: bytes) -> None:
        if self._body is None:  # a body where none belongs (GET): ignored
            return
        if len(self._body) + len(chunk) > MAX_REQUEST_BODY:
            self._body_too_large = True
        else:
            self._body += chunk

    async def get(self, repo: str, action: str) -> None:
        if self.refused:
            self.refused_answer()
            return
        await self.refresher.on_click(self.course, self.click_client())
        if not await self.refresher.has_snapshot(self.course.name):
            self.answer_no_snapshot()
            return
        await self.answer(b"")

    async def post(self, repo: str, action: str) -> None:
        if self._client_gone:  # gone (or refused) before its body was read: nothing to answer
            return
        if self._body_too_large:
            raise Refusal(413, f"the git request is larger than {MAX_REQUEST_BODY // 1024} KiB")
        body = decode_body(bytes(self._body or b""), self.request.headers.get("Content-Encoding", ""))
        self._body = None
        if self.refused:
            self.refused_answer()
            return
        wants = check_request(body)
        if not body.startswith(LS_REFS):  # a fetch: the last git request of a click
            self.refresher.click_fetched(self.course.name, self.click_client())
            self._notice = rewritenotice.notice(self.config, self.course.name, body,
                                                bool(self.request.headers.get(rewritenotice.BRIDGE_HEADER)))
            self._sideband = b"side-band" in body
        commit = self.cache.head(self.course.name)
        if commit is None:  # no snapshot: the fetch after a placeholder advertisement
            self.answer_no_snapshot()
            return
        if wants - {commit}:
            # Only snapshots are served, whatever else the repo holds (protocol v2 upload-pack
            # would send any object it has when asked by id).
            refused = wants - await self.cache.snapshots(self.course.name, commit)
            if refused:
                self.set_header("Content-Type", f"application/x-{UPLOAD_PACK}-result")
                named = min(refused)
                named = named if re.fullmatch("[0-9a-f]{40}", named) else "(not an object id)"
                self.finish(fetch_error(f"upload-pack: not our ref {named}"))
                return
        await self.answer(body, commit)

    def refused_answer(self) -> None:
        """A refused student's click: info/refs names the placeholder (nbgitpuller's ls-remote hides
        errors), the fetch fails with the reason, which nbgitpuller streams to the student's page."""
        self.answer_placeholder(f"course {self.course.name}: {self.refused}")

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
        self.answer_placeholder(message)

    def answer_placeholder(self, message: str) -> None:
        # Status 200: git reads the body only then. info/refs names a placeholder, so that
        # ls-remote succeeds; the fetch's POST gets the reason, which git prints to the student.
        self.set_header("Cache-Control", "no-cache")
        if self.request.method == "GET":
            self.set_header("Content-Type", f"application/x-{UPLOAD_PACK}-advertisement")
            self.finish(placeholder_advertisement())
        else:
            self.set_header("Content-Type", f"application/x-{UPLOAD_PACK}-result")
            self.finish(fetch_error(message))

    async def answer(self, body: bytes, commit: str | None = None) -> None:
        commit = commit or self.cache.head(self.course.name)
        if commit is None:
            self.answer_no_snapshot()
            return
        protocol = self.request.headers.get("Git-Protocol", "")
        request = GitRequest(
            course=self.course.name, commit=commit, method=self.request.method, action=self.path_kwargs["action"],
            # The backend reads nothing else from the query: other parameters must not split the cache.
            query=f"service={UPLOAD_PACK}" if self.request.method == "GET" else "",
            content_type=self.request.headers.get("Content-Type", ""),
            protocol=protocol if _GIT_PROTOCOL.match(protocol) else "", body=body,
            # answers that list refs change with the pins
            refs=pins_stamp(self.config.repos_dir / f"{self.course.name}.git")
            if self.request.method == "GET" or body.startswith(LS_REFS) else "")
        reader = self.cache.open(request, self.click_client())
        try:
            await self.relay(reader)
        finally:
            reader.close()

    async def relay(self, reader: Reader) -> None:
        """Send the stored or growing CGI answer: its head as HTTP headers, then the rest."""
        head = b""
        while (split := head.find(b"\r\n\r\n")) < 0:
            chunk = await reader.read(4096)
            if not chunk or len(head) > 65536:
                raise Refusal(502, "git http-backend failed: " + (reader.failure or "its answer has no CGI head"))
            head += chunk
        self._apply_cgi_headers(head[:split])
        chunk, added = head[split + 4:], 0
        if self._notice:  # a student a retract left behind reads why (rewritenotice.py)
            chunk, added = rewritenotice.insert(chunk, self._notice, self._sideband)
            while not added and len(chunk) <= 65536 and (more := await reader.read(4096)):
                chunk, added = rewritenotice.insert(chunk + more, self._notice, self._sideband)  # up to the pack
        if reader.size is not None:  # a stored answer: its length is known, from its own file
            self.set_header("Content-Length", str(reader.size - split - 4 + added))
        connection = self.request.connection
        try:
            if reader.stored_file and hasattr(connection, "_expected_content_remaining") \
                    and not isinstance(connection.stream, tornado.iostream.SSLIOStream):
                # A stored answer goes out as a static file would: sendfile, no copies.
                self.write(chunk)
                if not await self._flushed() or not await self._send_file(reader):
                    return
                chunk = b""
            while True:
                if chunk:
                    self.write(chunk)
                    if not await self._flushed():
                        return
                chunk = await reader.read(CHUNK)
                if not chunk:
                    break
            if reader.failure is not None:
                # Cut short: git sees a broken answer and says so, and nothing is stored.
                self.request.connection.close()
                return
            self.finish()
        except tornado.iostream.StreamClosedError:
            self._client_gone = True
        if self._client_gone:
            log.info("course %s: client %s went away during %s", self.course.name,
                     self.request.remote_ip, self.path_kwargs["action"])

    async def _send_file(self, reader: Reader) -> bool:
        """The rest of a stored answer with sendfile(2) on the client's socket, after the
        headers went out through tornado (whose buffer is then empty); False when the client
        is gone or was dropped for reading nothing for `stall_timeout`."""
        loop = asyncio.get_running_loop()
        socket = self.request.connection.stream.socket
        sent = 0
        try:
            while reader.offset < reader.end:
                try:
                    count = os.sendfile(socket.fileno(), reader.fd, reader.offset, reader.end - reader.offset)
                except BlockingIOError:
                    count = None
                if count:
                    reader.offset += count
                    sent += count
                    continue
                if count == 0:  # the file ends before its header said: end, never spin on it
                    reader.cut_short()
                    self._client_gone = True
                    self.request.connection.close()
                    return False
                writable = loop.create_future()
                loop.add_writer(socket.fileno(), lambda: writable.done() or writable.set_result(None))
                try:
                    await asyncio.wait_for(writable, self.backends.stall_timeout)
                finally:
                    loop.remove_writer(socket.fileno())
        except (OSError, asyncio.TimeoutError) as error:
            log.info("course %s: client %s %s", self.course.name, self.request.remote_ip,
                     "read nothing for a while; dropped" if isinstance(error, asyncio.TimeoutError) else "went away")
            self._client_gone = True
            self.request.connection.close()
            return False
        finally:
            # Tornado counts the body against Content-Length: tell it what went out beside it.
            self.request.connection._expected_content_remaining -= sent
        return True

    async def _flushed(self) -> bool:
        """Flush, but drop a client that reads nothing for `stall_timeout` seconds."""
        try:
            await tornado.gen.with_timeout(timedelta(seconds=self.backends.stall_timeout), self.flush(),
                                           quiet_exceptions=(tornado.iostream.StreamClosedError,))
            return True
        except asyncio.TimeoutError:
            log.info("course %s: client %s read nothing for %gs; dropped", self.course.name,
                     self.request.remote_ip, self.backends.stall_timeout)
            self._client_gone = True
            self.request.connection.close()
            return False

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
        # The answer is computed (and stored) for the others who ask the same; only this
        # client's relay ends. A body still arriving is dropped now (connections.py tells
        # a request it refused this way, before its connection is closed).
        self._client_gone = True
        self._body = None
        super().on_connection_close()


ROUTES = [
    (r"/git/(?P<repo>[^/]+)/(?P<action>info/refs|git-upload-pack|git-receive-pack)", GitHandler),
]
