"""Clients that hold requests open against a running `f2git serve`: the attacks of issue 18
items 7 and 8, shared by tests/test_budgets.py and benchmarks/attack.py.

    held = hold_requests(port, "token-a", 1000, body=2 * MIB - 1)   # each body one byte short
    ...                                                               # the server holds them
    release(held)
"""
from __future__ import annotations

import os
import re
import select
import socket
import time

MIB = 1024 * 1024


def git_env(token: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a `git` that sends `token` as a bearer token, as a student's would."""
    env = dict(os.environ if base is None else base)
    count = int(env.get("GIT_CONFIG_COUNT", "0"))
    env.update({"GIT_CONFIG_COUNT": str(count + 1), f"GIT_CONFIG_KEY_{count}": "http.extraHeader",
                f"GIT_CONFIG_VALUE_{count}": f"Authorization: Bearer {token}"})
    return env


def request_head(course: str, token: str | None, length: int, prefix: str = "") -> bytes:
    """The headers of a protocol v2 upload-pack POST whose body is `length` bytes long; `prefix`
    is the path f2git is served under (a hub's /services/f2git)."""
    lines = [f"POST {prefix}/git/{course}/git-upload-pack HTTP/1.1", "Host: 127.0.0.1", "Git-Protocol: version=2",
             "Content-Type: application/x-git-upload-pack-request", f"Content-Length: {length}", "Connection: close"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def hold_requests(port: int, token: str | None, count: int, *, course: str = "course", body: int | bytes = 1000,
                  sent: int | None = None, source: str = "127.0.0.1", prefix: str = "") -> list[socket.socket]:
    """`count` upload-pack POSTs from `source`, each with a complete head announcing `body`
    bytes (a length, or the body itself) and `sent` of them sent (default: all but one)."""
    content = body if isinstance(body, bytes) else b"0" * min(body, MIB)
    length = len(body) if isinstance(body, bytes) else body
    return hold(port, request_head(course, token, length, prefix), content, count,
                sent=length - 1 if sent is None else sent, source=source)


def hold(port: int, head: bytes, content: bytes, count: int, *, sent: int,
         source: str = "127.0.0.1") -> list[socket.socket]:
    """`count` connections from `source` that send `head` and `sent` bytes of a body (`content`
    repeated), never finishing it. A connection the server refused or closed stays in the
    list (closed by the server: that is its answer)."""
    chunk = (content * (1 + min(sent, MIB) // max(len(content), 1)))[:min(sent, MIB)]
    held = []
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(30)
        try:
            sock.bind((source, 0))
            sock.connect(("127.0.0.1", port))
            sock.sendall(head)
            left = sent
            while left:
                sock.sendall(chunk[:left])
                left -= min(left, len(chunk))
        except OSError:  # refused, reset or timed out: the server ended it
            pass
        held.append(sock)
    return held


def still_open(held: list[socket.socket]) -> int:
    """How many of `held` the server has neither answered nor closed."""
    count = 0
    for sock in held:
        sock.setblocking(False)
        try:
            sock.recv(1, socket.MSG_PEEK)  # data: answered; b"": closed
        except BlockingIOError:
            count += 1  # nothing to read: still held
        except OSError:
            pass
        finally:
            sock.setblocking(True)
    return count


def answered(held: list[socket.socket], at_least: int, timeout: float = 60) -> list[socket.socket]:
    """Waits until at least `at_least` of `held` were answered or closed by the server; those."""
    poller = select.poll()
    for sock in held:
        poller.register(sock, select.POLLIN)
    deadline = time.monotonic() + timeout
    ready: set[int] = set()
    while len(ready) < at_least and time.monotonic() < deadline:
        ready.update(fd for fd, _ in poller.poll(100))
    return [sock for sock in held if sock.fileno() in ready]


def answers(held: list[socket.socket], timeout: float = 30) -> list[bytes]:
    """Each connection's answer: one HTTP response (its head and Content-Length bytes), or what
    came until the server closed it (b"" when it sent nothing)."""
    found = []
    for sock in held:
        sock.settimeout(timeout)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
                head, separator, body = data.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length: *(\d+)", head) if separator else None
                if length and len(body) >= int(length.group(1)):
                    break
        except OSError:
            pass
        found.append(data)
    return found


def release(held: list[socket.socket]) -> None:
    for sock in held:
        sock.close()
