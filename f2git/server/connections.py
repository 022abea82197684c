"""The front door of `f2git serve`: which connections get in, before any request is read.

- A request's headers must arrive within `header_timeout` (tornado waits an hour); the same
  bound ends idle keep-alive connections, and answers say so (`Keep-Alive: timeout=N`).
- At most `max_connections` at once, kept below the open-files limit with room for git
  backends and syncs. When full, the connection that has waited longest for its headers
  (half-sent or idle, for EVICT_AFTER at least) is closed for the newcomer; if none may go
  yet, newcomers wait in the listen backlog.
- Budgets per identity, so no one uses up what others behind the same address need (a hub's
  proxy, a NAT): once a request is authenticated (`claim`), its connection counts against
  its identity (`max_connections_per_identity`: a hub user, a token) instead of its address.
  `max_connections_per_address` caps only what is not yet authenticated (waiting for
  headers, idle, anonymous); a newcomer over it replaces the address's own connection that
  waited longest (EVICT_AFTER at least), else gets a short 503.
- Unfinished request bodies held at once: `max_request_bodies` bytes (budgets.BodyBudget),
  paid for by the request's identity once known, else the credential it sent, else its
  address; a refused request gets a 503 saying why and is closed.
- Running out of file descriptors anyway (the limit shrank, syncs took more): for a minute
  the server holds fewer connections, closing idle ones, so git and syncs get descriptors
  again; one log line a minute, instead of tornado's accept loop logging every failed
  accept (a log storm) and spinning.
"""
from __future__ import annotations

import collections
import errno
import logging
import math
import resource
import socket
import time
from typing import Any, Iterable

import tornado.httpserver
import tornado.httputil
import tornado.web
from tornado.ioloop import IOLoop

from .budgets import BodyBudget, digest
from .headers import SECURITY_HEADERS

log = logging.getLogger("f2git.connections")

# Connections the kernel queues before f2git accepts them: a class clicking at once
# (tornado's 128 overflowed 250+ times per 500-client burst). net.core.somaxconn caps it.
LISTEN_BACKLOG = 4096
# File descriptors kept free for everything but client connections: logs, repos, syncs
# (sources, fast-import), and per git backend its three pipes.
FD_RESERVE = 128
FD_PER_BACKEND = 4
EVICT_AFTER = 0.5  # s a connection must have waited for headers before a newcomer may replace it
OUT_OF_FILES_PAUSE = 0.5  # s accepting rests when out of file descriptors with nothing to close
LOWERED_FOR = 60.0  # s the server holds fewer connections after running out of file descriptors
ACCEPT_BATCH = 128  # connections accepted per wake-up, so requests in flight are not starved
OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
def claim(request: tornado.httputil.HTTPServerRequest, holder: str | None) -> str | None:
    """Count `request`'s connection against `holder` (see holder_of) until the request ends;
    None when it fits, else why it was refused (the holder has max_connections_per_identity
    requests open). A server without budgets (tests' own HTTPServer) admits everything."""
    ticket = getattr(request.connection, "f2git_request", None)
    if ticket is None or holder is None:
        return None
    return ticket.server.claim(ticket, holder)


def keep_alive_hint(seconds: float) -> type[tornado.web.OutputTransform]:
    """An output transform telling clients that keep connections open (`Keep-Alive:
    timeout=N`) when f2git closes idle ones: node's http.Agent, which the hub's
    configurable-http-proxy uses, then closes them a second earlier itself, instead of
    sending a click down a connection f2git is closing (a 503 from the proxy)."""
    header = f"timeout={max(1, int(seconds))}"

    class KeepAliveHint(tornado.web.OutputTransform):
        def __init__(self, request: Any):
            self.keep_alive = request.version == "HTTP/1.1" and request.headers.get("Connection", "").lower() != "close"

        def transform_first_chunk(self, status_code, headers, chunk, finishing):
            if self.keep_alive and "Keep-Alive" not in headers and headers.get("Connection", "").lower() != "close":
                headers["Keep-Alive"] = header
            return status_code, headers, chunk

    return KeepAliveHint


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, hard, error)
    return soft


def connection_budget(wanted: int, backends: int) -> int:
    """`wanted` connections, or fewer when the open-files limit would not hold them."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = soft - FD_RESERVE - FD_PER_BACKEND * backends
    if room >= wanted:
        return wanted
    budget = max(room, soft // 4, 1)
    log.warning("[server] max_connections = %d lowered to %d: the open-files limit is %d"
                " (raise it, e.g. LimitNOFILE= in the systemd unit)", wanted, budget, soft)
    return budget


class OnceAMinute:
    """Logs one line per key a minute at most, with how many were left out meanwhile."""

    def __init__(self, period: float = 60.0):
        self.period = period
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        last, left_out = self._last.get(key, (float("-inf"), 0))
        if now - last < self.period:
            self._last[key] = (last, left_out + 1)
            return
        if len(self._last) > 10000:  # many keys (addresses): forget old ones
            self._last.clear()
        self._last[key] = (now, 0)
        suffix = f" ({left_out} more like it in the last minute)" if left_out else ""
        log.warning(message + suffix, *args)


class _Listener:
    """Accepts on one listening socket while the server has room; pauses otherwise."""

    def __init__(self, server: "GuardedHTTPServer", sock: socket.socket):
        self.server = server
        self.sock = sock
        self.loop = IOLoop.current()
        self.listening = False
        self.closed = False
        self._timer: object | None = None
        self.resume()

    def resume(self) -> None:
        if self._timer is not None:
            self.loop.remove_timeout(self._timer)
            self._timer = None
        if not self.closed and not self.listening:
            self.loop.add_handler(self.sock, self._accept, IOLoop.READ)
            self.listening = True

    def pause(self, seconds: float) -> None:
        """Stop accepting for `seconds` (inf: until a connection closes)."""
        if self.listening:
            self.loop.remove_handler(self.sock)
            self.listening = False
        if seconds != math.inf and self._timer is None and not self.closed:
            self._timer = self.loop.call_later(seconds, self.resume)

    def close(self) -> None:
        self.pause(math.inf)
        self.closed = True
        self.resume()  # only cancels a timer now

    def _accept(self, fd: Any, events: int) -> None:
        server = self.server
        for _ in range(ACCEPT_BATCH):
            if self.closed:
                return
            wait = server.make_room()
            if wait:
                self.pause(wait)
                return
            try:
                connection, address = self.sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:
                if error.errno not in OUT_OF_FILES:
                    raise
                if not server.out_of_files(error.strerror):
                    self.pause(OUT_OF_FILES_PAUSE)
                    return
                continue  # make_room() now closes idle connections
            server._handle_connection(connection, address)


class GuardedHTTPServer(tornado.httpserver.HTTPServer):
    """tornado's HTTPServer with the bounds above. Extra arguments: `max_connections`,
    `max_connections_per_address` and `max_connections_per_identity` (0: none of its own),
    `max_request_bodies` (bytes; 0: no bound); `idle_connection_timeout` is the header timeout."""

    def initialize(self, request_callback: Any, *, max_connections: int, max_connections_per_address: int,
                   max_connections_per_identity: int = 0, max_request_bodies: int = 0, **kwargs: Any) -> None:
        super().initialize(request_callback, **kwargs)
        self.max_connections = self.configured_connections = max_connections
        self._restore: object | None = None
        self.max_per_address = max_connections_per_address
        self.max_per_identity = max_connections_per_identity
        self.bodies = BodyBudget(max_request_bodies) if max_request_bodies else None
        self.open: dict[Any, str] = {}  # stream → client address
        self.per_address: collections.Counter[str] = collections.Counter()  # connections not claimed
        self.claims: dict[Any, str] = {}  # stream → the identity its request is counted against
        self.per_identity: collections.Counter[str] = collections.Counter()
        self.awaiting: dict[Any, float] = {}  # streams waiting for a request's headers, oldest first
        # per address, its connections not yet authenticated (headers or body on the way), oldest first
        self.unclaimed: dict[str, dict[Any, float]] = {}
        self.listeners: dict[int, _Listener] = {}
        self.said = OnceAMinute()

    # -- accepting ---------------------------------------------------------------------------

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            listener = _Listener(self, sock)
            self.listeners[sock.fileno()] = listener
            self._handlers[sock.fileno()] = listener.close  # what TCPServer.stop() calls

    def make_room(self) -> float:
        """0 when one more connection fits (closing idle ones if need be), else the seconds
        until one may (inf: until a connection closes)."""
        while len(self.open) >= self.max_connections:
            wait = self.close_idle()
            if wait:
                return wait
        return 0.0

    def out_of_files(self, cause: str) -> bool:
        """accept() found no free descriptor: hold fewer connections for a while, so closing
        idle ones frees descriptors for git and syncs too. False when there is none to close."""
        lowered = max(len(self.open) - FD_RESERVE // 2, len(self.open) // 2)
        self.said.warning("fds", "out of file descriptors with %d connections open (%s): holding at most %d"
                          " for %d s", len(self.open), cause, max(lowered, 1), LOWERED_FOR)
        if lowered < 1:
            return False
        self.max_connections = min(self.max_connections, lowered)
        if self._restore is None:
            self._restore = IOLoop.current().call_later(LOWERED_FOR, self._restore_cap)
        return True

    def _restore_cap(self) -> None:
        self._restore = None
        self.max_connections = self.configured_connections

    def close_idle(self) -> float:
        """Close the connection that has waited longest for a request, if it waited EVICT_AFTER:
        0 when one was closed, else the seconds until one may be (inf: none is waiting)."""
        for stream, since in self.awaiting.items():
            waited = time.monotonic() - since
            if waited < EVICT_AFTER:
                return EVICT_AFTER - waited
            self.said.warning("evict", "%d connections open (max_connections or the open-files limit):"
                              " closing the one that waited longest for its request, from %s",
                              len(self.open), self.open[stream])
            self._forget(stream)
            stream.close()
            return 0.0
        return math.inf

    def close_unclaimed(self, client: str) -> bool:
        """Close the connection from `client` that has waited longest without being authenticated,
        if it waited EVICT_AFTER; False when there is none."""
        for stream, since in self.unclaimed.get(client, {}).items():
            if time.monotonic() - since < EVICT_AFTER:
                return False
            self.said.warning(f"evict {client}", "%d unauthenticated connections open from %s"
                              " (max_connections_per_address): closing the one that waited longest",
                              self.per_address[client], client)
            self._forget(stream)
            stream.close()
            return True
        return False

    def handle_stream(self, stream: Any, address: Any) -> None:
        client = address[0] if isinstance(address, tuple) else str(address)
        if self.max_per_address and self.per_address[client] >= self.max_per_address \
                and not self.close_unclaimed(client):
            self.said.warning(f"address {client}", "%d connections open from %s"
                              " (max_connections_per_address): refusing more", self.per_address[client], client)
            _refuse(stream, f"too many connections from {client}; try again in a moment\n")
            return
        self.open[stream] = client
        self.per_address[client] += 1
        now = time.monotonic()
        self.awaiting[stream] = now
        self.unclaimed.setdefault(client, {})[stream] = now
        super().handle_stream(stream, address)

    # -- what each connection is doing --------------------------------------------------------

    def start_request(self, server_conn: Any, request_conn: Any) -> Any:
        stream = server_conn.stream
        client = self.open.get(stream)
        if client is not None:
            self._unclaim(stream, client)
            now = time.monotonic()
            self.awaiting.pop(stream, None)  # to the end: oldest first
            self.awaiting[stream] = now
            waiting = self.unclaimed.setdefault(client, {})
            waiting.pop(stream, None)
            waiting[stream] = now
        busy = _Busy(self, super().start_request(server_conn, request_conn), stream, client or "", request_conn)
        request_conn.f2git_request = busy  # what claim() finds
        return busy

    def claim(self, busy: "_Busy", holder: str) -> str | None:
        stream = busy.stream
        client = self.open.get(stream)
        if client is None or self.claims.get(stream) == holder:
            return None
        self._unclaim(stream, client)
        if self.max_per_identity and self.per_identity[holder] >= self.max_per_identity:
            self.said.warning(f"identity {holder}", "%s has %d requests open (max_connections_per_identity):"
                              " refusing more", holder, self.per_identity[holder])
            return (f"too many requests at once from {holder} (at most {self.max_per_identity});"
                    " try again when your others are done")
        self.per_address[client] -= 1
        if self.per_address[client] <= 0:
            del self.per_address[client]
        self._not_waiting(stream, client)
        self.claims[stream] = holder
        self.per_identity[holder] += 1
        if self.bodies is not None:
            self.bodies.move(busy, holder)
        return None

    def body_done(self, busy: "_Busy") -> None:
        """`busy`'s body is in (or never will be): it holds no body bytes and, being served
        now, is no longer closed for newcomers from its address."""
        if self.bodies is not None:
            self.bodies.release(busy)
        client = self.open.get(busy.stream)
        if client is not None and busy.stream not in self.claims:
            self._not_waiting(busy.stream, client)

    def _unclaim(self, stream: Any, client: str) -> None:
        holder = self.claims.pop(stream, None)
        if holder is not None:
            self.per_identity[holder] -= 1
            if self.per_identity[holder] <= 0:
                del self.per_identity[holder]
            self.per_address[client] += 1

    def _not_waiting(self, stream: Any, client: str) -> None:
        waiting = self.unclaimed.get(client)
        if waiting is not None:
            waiting.pop(stream, None)
            if not waiting:
                del self.unclaimed[client]

    def on_close(self, server_conn: Any) -> None:
        super().on_close(server_conn)
        self._forget(server_conn.stream)
        for listener in self.listeners.values():
            listener.resume()

    def _forget(self, stream: Any) -> None:
        client = self.open.pop(stream, None)
        self.awaiting.pop(stream, None)
        if client is not None:
            self._unclaim(stream, client)
            self._not_waiting(stream, client)
            self.per_address[client] -= 1
            if self.per_address[client] <= 0:
                del self.per_address[client]


class _Busy(tornado.httputil.HTTPMessageDelegate):
    """Passes a request through, counting its body against its payer's budget; once its
    headers are in, the connection is no longer idle."""

    def __init__(self, server: GuardedHTTPServer, delegate: Any, stream: Any, client: str, connection: Any):
        self.server = server
        self.delegate = delegate
        self.stream = stream
        self.connection = connection  # tornado's HTTP1Connection of this request
        self.payer = client  # who pays for its body: see headers_received and claim()
        self.refused = False

    def headers_received(self, start_line: Any, headers: Any) -> Any:
        self.server.awaiting.pop(self.stream, None)
        # Until authenticated, a body is paid for by the credential it carries (were it the
        # address, one anonymous sender behind a proxy would refuse every other's small body).
        credential = headers.get("Authorization") or headers.get("Cookie")
        if credential:
            self.payer = f"credential #{digest(credential)}"
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        if self.refused:
            return None
        bodies = self.server.bodies
        if bodies is not None and not self._answered():
            refusal = bodies.charge(self, len(chunk))
            if refusal:
                self.server.said.warning(f"bodies {self.payer}", "refused a request body: %s", refusal)
                self.refuse(refusal)
                return None
        return self.delegate.data_received(chunk)

    def _answered(self) -> bool:
        """The handler answered before the body was in (a refusal): the rest is read and dropped."""
        return bool(getattr(self.connection, "_write_finished", False))

    def refuse(self, message: str) -> None:
        """Answer 503 with `message` and close, before the handler sees the body; the handler
        is told at once, so what it holds of the body is freed now, not at the close."""
        self.refused = True
        self.server.body_done(self)
        _refuse(self.stream, message + "\n")
        self.delegate.on_connection_close()

    def finish(self) -> None:
        self.server.body_done(self)
        if not self.refused:
            self.delegate.finish()

    def on_connection_close(self) -> None:
        self.server.body_done(self)
        if not self.refused:
            self.delegate.on_connection_close()


def _refuse(stream: Any, message: str) -> None:
    body = message.encode()
    head = ["HTTP/1.1 503 Service Unavailable", "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(body)}", "Connection: close", "Retry-After: 10"]
    head += [f"{name}: {value}" for name, value in SECURITY_HEADERS.items()]

    def close(written: Any) -> None:
        if not written.cancelled():
            written.exception()  # a client gone already is no news
        stream.close()

    try:
        stream.write("\r\n".join(head).encode() + b"\r\n\r\n" + body).add_done_callback(close)
    except Exception:  # the client is gone already
        stream.close()
