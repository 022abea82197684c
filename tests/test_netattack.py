"""Attacks on the front door of a real `f2git serve`: connections that never finish their
request, at the open-files limit; pages on other sites; every answer's security headers."""
from __future__ import annotations

import http.client
import json
import os
import resource
import select
import signal
import socket
import time

import pytest

from f2git.config import ConfigError, parse
from f2git.server.auth import Auth
from f2git.store import CourseRepo
from tests.repohelpers import SourceFolder, git, machine_git_config_ignored  # noqa: F401 (autouse)
from tests.serveprocess import ServeProcess, write_config
from tests.serverhelpers import RunningServer, config_factory

HALF_OPEN = 1200  # more than the server may hold, and more than its open-files limit
SERVER_NOFILE = 256  # the server's open-files limit (soft and hard) in the attack tests
ATTACKER_ADDRESSES = 24  # 127.0.0.2 … : every address on lo is 127.0.0.1's machine


@pytest.fixture
def source(tmp_path) -> SourceFolder:
    folder = SourceFolder(tmp_path / "cs101")
    folder.write("week1/intro.ipynb", "intro\n")
    folder.write("data/table.csv", "a,b\n1,2\n")
    return folder


@pytest.fixture(scope="module", autouse=True)
def enough_descriptors_for_the_attacker():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = HALF_OPEN + 300
    assert hard >= wanted, f"the attack needs {wanted} open files in the test process; the hard limit is {hard}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def lowered_nofile() -> None:
    """In the server's process, before f2git starts: a small open-files limit it cannot raise."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (SERVER_NOFILE, SERVER_NOFILE))


def half_open(port: int, addresses: list[str], count: int) -> list[socket.socket]:
    """`count` connections spread over `addresses`, each with a request whose headers never end."""
    held = []
    for number in range(count):
        sock = socket.socket()
        sock.bind((addresses[number % len(addresses)], 0))
        sock.settimeout(30)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        except OSError:  # refused or reset by the server: that is its answer
            pass
        held.append(sock)
    return held


def served(server: ServeProcess, path: str, timeout: float = 120) -> tuple[int, bytes]:
    return server.request("GET", path, timeout=timeout)


def test_half_open_connections_at_the_open_files_limit_stop_no_one(tmp_path, source):
    """1200 connections that never finish their headers, against a server allowed 256 open
    files: from one address (its cap refuses most), then from 24 (the server's cap closes
    the longest-waiting ones for newcomers). Meanwhile /healthz answers, a real clone works,
    and the log stays small. Before: accept() failed with EMFILE in a loop that logged every
    failure (hundreds of MB) and nothing was answered, /healthz included."""
    config = write_config(tmp_path / "f2git.toml",
                          {"data_dir": str(tmp_path / "data"), "max_connections_per_address": 50},
                          {"cs101": {"source": "local", "path": str(source.path), "schedule": 0}})
    with ServeProcess(config, preexec_fn=lowered_nofile) as server:
        assert server.post("/api/courses/cs101/refresh")[1]["ok"]
        for addresses in (["127.0.0.2"], [f"127.0.0.{n}" for n in range(2, 2 + ATTACKER_ADDRESSES)]):
            attack = half_open(server.port, addresses, HALF_OPEN)
            try:
                assert served(server, "/healthz") == (200, b"ok")
                clone = tmp_path / f"clone-{len(addresses)}"
                git("clone", "--depth", "1", server.git_url("cs101"), clone)
                assert (clone / "week1" / "intro.ipynb").read_text() == "intro\n"
                assert len(json.loads(served(server, "/api/courses")[1])["courses"]) == 1
            finally:
                for sock in attack:
                    sock.close()
        log = server.output()
        assert server.process.poll() is None, log[-2000:]
    assert len(log) < 100_000, f"{len(log)} bytes of log:\n{log[:3000]}"
    assert "Traceback" not in log, log[:3000]


def test_running_out_of_file_descriptors_is_survived_quietly(tmp_path, source):
    """The open-files limit shrinks under a running server (here: prlimit), so its connection
    cap no longer protects it and accept() fails with EMFILE: it holds fewer connections for
    a while, closing the longest-idle ones, logs once, and keeps answering, git included."""
    config = write_config(tmp_path / "f2git.toml", {"data_dir": str(tmp_path / "data")},
                          {"cs101": {"source": "local", "path": str(source.path), "schedule": 0}})
    with ServeProcess(config) as server:
        assert server.post("/api/courses/cs101/refresh")[1]["ok"]
        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (SERVER_NOFILE, SERVER_NOFILE))
        attack = half_open(server.port, [f"127.0.0.{n}" for n in range(2, 2 + ATTACKER_ADDRESSES)], HALF_OPEN)
        try:
            assert served(server, "/healthz") == (200, b"ok")
            git("clone", "--depth", "1", server.git_url("cs101"), tmp_path / "clone")  # git gets descriptors
        finally:
            for sock in attack:
                sock.close()
        log = server.output()
        assert server.process.poll() is None, log[-2000:]
    assert "out of file descriptors" in log
    assert len(log) < 100_000, f"{len(log)} bytes of log:\n{log[:3000]}"
    assert "Traceback" not in log, log[:3000]


def test_the_soft_open_files_limit_is_raised_to_the_hard_limit_at_start(tmp_path, source):
    config = write_config(tmp_path / "f2git.toml", {"data_dir": str(tmp_path / "data")},
                          {"cs101": {"source": "local", "path": str(source.path), "schedule": 0}})
    with ServeProcess(config, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))) as server:
        assert resource.prlimit(server.pid, resource.RLIMIT_NOFILE) == (4096, 4096)


def test_a_request_whose_headers_never_end_is_closed_within_the_header_timeout(tmp_path, source):
    config = write_config(tmp_path / "f2git.toml", {"data_dir": str(tmp_path / "data"), "header_timeout": 1},
                          {"cs101": {"source": "local", "path": str(source.path), "schedule": 0}})
    with ServeProcess(config) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.settimeout(60)  # tornado's default would hold it for an hour
            assert slow.recv(100) == b""  # closed by the server, unanswered


# -- pages on other sites (auth = "none") and every answer's headers ---------------------------

@pytest.fixture
def server(tmp_path, source):
    with RunningServer(config_factory(tmp_path, {"cs101": {"source": "local", "path": str(source.path),
                                                           "schedule": 0}}, refresh_ttl=3600)) as running:
        yield running


def head(server: RunningServer) -> str | None:
    return CourseRepo.for_course(server.config, "cs101").head()


def as_host(server: RunningServer, method: str, path: str, host: str, **kwargs):
    headers = {"Host": host, **kwargs.pop("headers", {})}
    return server.request(method, path, headers=headers, **kwargs)


@pytest.mark.parametrize("method, path", [("GET", "/"), ("GET", "/api/courses"), ("GET", "/healthz"),
                                          ("GET", "/git/cs101/info/refs?service=git-upload-pack"),
                                          ("POST", "/api/courses/cs101/refresh")])
def test_a_page_whose_name_points_here_gets_nothing(server, method, path):
    """DNS rebinding: evil.example resolves to 127.0.0.1 for the victim's browser, whose page
    then asks f2git with Host: evil.example and reads (or changes) everything."""
    body = b"" if method == "POST" else None
    status, headers, answer = as_host(server, method, path, f"evil.example:{server.port}", body=body)
    assert status == 403 and b"not to 'evil.example'" in answer
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert head(server) is None  # the POST synced nothing


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST", "[::1]"])
def test_the_servers_own_names_are_served(server, host):
    status, _, answer = as_host(server, "GET", "/api/courses", f"{host}:{server.port}")
    assert status == 200 and json.loads(answer)["courses"][0]["name"] == "cs101"


@pytest.mark.parametrize("headers, body, expected", [
    # a form on another site: the browser sends its Origin
    ({"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"}, b"a=1", 403),
    # fetch(…, {mode: "no-cors", method: "POST"}) without a body: no content type, but an Origin
    ({"Origin": "http://evil.example"}, b"", 403),
    ({"Origin": "null"}, b"", 403),  # a sandboxed frame or a file:// page
    # a page that sends JSON as text/plain (no preflight) to confirm a mass deletion
    ({"Content-Type": "text/plain"}, b'{"allow_mass_delete": true}', 415),
    ({"Sec-Fetch-Site": "cross-site"}, b"", 403),
])
def test_a_cross_site_post_changes_nothing(server, headers, body, expected):
    status, _, answer = server.request("POST", "/api/courses/cs101/refresh", body=body, headers=headers)
    assert status == expected, answer
    assert head(server) is None


def test_scripts_and_the_servers_own_pages_may_post(server):
    own = {"Origin": server.url, "Content-Type": "application/json"}
    status, _, answer = server.request("POST", "/api/courses/cs101/refresh", body=b"{}", headers=own)
    assert status == 200 and json.loads(answer)["ok"] is True
    status, _, answer = server.request("POST", "/api/courses/cs101/refresh", body=b"")  # curl -X POST
    assert status == 200 and json.loads(answer)["ok"] is True
    git("clone", "--depth", "1", server.git_url("cs101"), server.config.path.parent / "clone")  # POST upload-pack


class BrokenAuth(Auth):
    """Identifying anyone fails with a bug: every authenticated path answers 500."""

    async def identify(self, handler):
        raise RuntimeError("a bug")


def assert_secure_headers(headers, what):
    assert headers["X-Content-Type-Options"] == "nosniff", what
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], what
    assert headers["Referrer-Policy"] == "same-origin", what
    assert headers["X-Frame-Options"] == "DENY", what


def test_every_answer_carries_the_security_headers(server, tmp_path):
    server.post_json("/api/courses/cs101/refresh")
    answers = {
        "200 health": server.request("GET", "/healthz"),
        "200 api": server.request("GET", "/api/courses/cs101"),
        "200 dashboard": server.request("GET", "/"),
        "200 git refs": server.request("GET", "/git/cs101/info/refs?service=git-upload-pack"),
        "200 git pack": server.request("POST", "/git/cs101/git-upload-pack", body=b"0000",
                                       headers={"Content-Type": "application/x-git-upload-pack-request"}),
        "200 static": server.request("GET", "/static/dashboard.css"),
        "404 no route": server.request("GET", "/nothing/here"),
        "404 api": server.request("GET", "/api/courses/nope"),
        "404 dashboard": server.request("GET", "/courses/nope"),
        "404 git": server.request("GET", "/git/nope/info/refs?service=git-upload-pack"),
        "403 push": server.request("GET", "/git/cs101/info/refs?service=git-receive-pack"),
        "403 dashboard without xsrf": server.request("POST", "/courses/cs101/refresh", body=b""),
        "403 foreign host": as_host(server, "GET", "/", "evil.example"),
        "405": server.request("POST", "/git/cs101/info/refs?service=git-upload-pack", body=b""),
    }
    etag = answers["200 static"][1]["Etag"]
    answers["304 static"] = server.request("GET", "/static/dashboard.css", headers={"If-None-Match": etag})
    with RunningServer(config_factory(tmp_path / "broken", {}), auth=BrokenAuth()) as broken:
        answers["500 api"] = broken.request("GET", "/api/courses")
        answers["500 dashboard"] = broken.request("GET", "/")
    for what, (status, headers, _) in answers.items():
        assert status == int(what.split()[0]), (what, status)
        assert_secure_headers(headers, what)
    # a keep-alive client (the hub's proxy) learns when f2git will close its idle connection
    keep_alive = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    keep_alive.request("GET", "/healthz")
    assert keep_alive.getresponse().getheader("Keep-Alive") == "timeout=10"
    keep_alive.close()
    # the dashboard keeps its own, stricter policy (tests/test_browser.py: no CSP violations)
    assert "script-src 'self'" in answers["200 dashboard"][1]["Content-Security-Policy"]


def test_a_refused_connection_carries_the_security_headers(tmp_path, source):
    """The per-address cap answers before tornado sees a request: its 503 has them too."""
    config = write_config(tmp_path / "f2git.toml",
                          {"data_dir": str(tmp_path / "data"), "max_connections_per_address": 1},
                          {"cs101": {"source": "local", "path": str(source.path), "schedule": 0}})
    with ServeProcess(config) as server:
        for _ in range(10):  # a newcomer more than EVICT_AFTER later replaces the first: a busy machine retries
            with socket.create_connection(("127.0.0.1", server.port)) as first:
                first.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # holds the one connection
                with socket.create_connection(("127.0.0.1", server.port)) as second:
                    second.settimeout(5)
                    answer = b""
                    try:
                        while chunk := second.recv(4096):
                            answer += chunk
                    except TimeoutError:
                        continue  # admitted in place of the first
            if answer:
                break
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503") and body == b"too many connections from 127.0.0.1; try again in a moment\n"
        assert b"\r\nX-Content-Type-Options: nosniff" in head and b"frame-ancestors 'none'" in head


def test_a_class_clicking_while_the_server_is_busy_waits_in_the_backlog(tmp_path, source):
    """1000 clients connect while the server cannot accept (stopped, as if busy): the kernel
    queues them all (tornado's backlog of 128 dropped the rest, who waited for SYN retries),
    and every one is answered once it runs again."""
    clients = 1000
    expected = min(clients, int(open("/proc/sys/net/core/somaxconn").read()))
    config = write_config(tmp_path / "f2git.toml", {"data_dir": str(tmp_path / "data")},
                          {"cs101": {"source": "local", "path": str(source.path), "schedule": 0}})
    with ServeProcess(config) as server:
        os.kill(server.pid, signal.SIGSTOP)
        socks = []
        try:
            for number in range(clients):
                sock = socket.socket()
                sock.bind((f"127.0.0.{2 + number % 8}", 0))
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", server.port))
                socks.append(sock)
            pending, deadline = {sock.fileno(): sock for sock in socks}, time.monotonic() + 5
            poller = select.poll()  # select() cannot take descriptors above 1023
            for fd in pending:
                poller.register(fd, select.POLLOUT)
            while pending and time.monotonic() < deadline:
                for fd, _ in poller.poll(500):
                    poller.unregister(fd)
                    del pending[fd]
            pending = set(pending.values())
            connected = [s for s in socks if s not in pending and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0]
            assert len(connected) >= expected, f"{len(connected)} of {clients} connected while the server was busy"
        finally:
            os.kill(server.pid, signal.SIGCONT)
        for sock in connected:
            sock.setblocking(True)
            sock.settimeout(60)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answers = [sock.makefile("rb").read() for sock in connected]
        assert all(answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok") for answer in answers)
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("key, value, message", [
    ("header_timeout", 0, "key 'header_timeout': must be a positive number"),
    ("header_timeout", float("nan"), "key 'header_timeout': must be a positive number"),
    ("header_timeout", float("inf"), "key 'header_timeout': must be a positive number"),
    ("max_connections", 0, "key 'max_connections': must be a positive number"),
    ("max_connections_per_address", -1, "key 'max_connections_per_address': must not be negative"),
    ("max_connections", "many", "key 'max_connections': expected an integer"),
])
def test_connection_keys_are_checked(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message):
        parse({"server": {key: value}}, tmp_path / "f2git.toml", {})
