"""Credentials never leak. Every connector that takes one runs every error path — 401, 403,
500, an HTML page, malformed JSON, a hanging server, a redirect to another host — against
a real local server whose error pages echo back the request headers (as debug pages do),
with distinctive secrets. None of them may appear in `f2git sync --json`, `f2git status
--json`, `f2git check`, the logs, the server's API answers, the dashboard, a git click's
error, or any file of the data dir (git objects included); and no credential is ever sent
to the other host."""
from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import responses

from f2git import status
from f2git.config import parse
from f2git.snapshot import sync_course
from f2git.store import CourseRepo
from tests.canvasfake import TOKEN as CANVAS_FAKE_TOKEN, FakeCanvas
from tests.serveprocess import ROOT, write_config
from tests.serverhelpers import RunningServer

ENV = {
    "CANVAS_TOKEN": "tok-SECRET-93f1",
    "STUDIP_USER": "user-SECRET-5c2d",
    "STUDIP_PASSWORD": "pw-SECRET-77ab",
    "ILIAS_USER": "user-SECRET-ilias-0a4b",
    "ILIAS_PASSWORD": "pw-SECRET-ilias-41c9",
    "ZENODO_TOKEN": "tok-SECRET-zen-8d0e",
    "MOODLE_TOKEN": "tokSECRETmoodle2b7c",
    "MIRROR_TOKEN": "tok-SECRET-mirror-6e1f",
}


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# Every form a credential travels in: itself, and HTTP Basic's encoding of user and password.
SECRETS = [*ENV.values(), basic(ENV["STUDIP_USER"], ENV["STUDIP_PASSWORD"]),
           basic(ENV["ILIAS_USER"], ENV["ILIAS_PASSWORD"]), basic("f2git", ENV["MIRROR_TOKEN"]),
           CANVAS_FAKE_TOKEN]

FAST_FAULTS = ["401", "403", "html", "malformed", "redirect"]
SLOW_FAULTS = ["500", "hang"]  # retried with backoff or bounded by timeouts: run in-process with short waits


def leaks(text: str | bytes) -> list[str]:
    data = text.encode(errors="surrogateescape") if isinstance(text, str) else text
    return [secret for secret in SECRETS if secret.encode() in data]


class EchoingServer(ThreadingHTTPServer):
    """Answers every request with `fault`; error pages repeat the request headers and path."""

    daemon_threads = True

    def __init__(self, fault: str, other: "EchoingServer | None" = None):
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.fault = fault
        self.other = other  # where "redirect" sends clients: another origin (localhost, another port)
        self.seen_headers: list[str] = []
        self.released = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> "EchoingServer":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.released.set()
        self.shutdown()
        self.server_close()


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EchoingServer

    def log_message(self, *args) -> None:
        pass

    def handle_one_request(self) -> None:
        # Every method (GET, PROPFIND, POST of git push…) gets the same treatment.
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline or not self.parse_request():
            self.close_connection = True
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        # Form posts (Moodle's token) are echoed too, as debug pages show request parameters.
        echo = f"{self.command} {self.path}\n{self.headers}\n{body[:2000].decode(errors='replace')}"
        self.server.seen_headers.append(echo)
        fault = self.server.fault
        if fault == "hang":
            # Long past the connectors' (shortened) timeouts; then closed, so a git push to it ends too.
            self.server.released.wait(3)
            self.close_connection = True
            return
        if fault == "redirect" and self.server.other is not None:
            target = f"http://localhost:{self.server.other.server_address[1]}{self.path}"
            return self._answer(302, "text/plain", echo, Location=target)
        code, kind, body = {
            "401": (401, "application/json", json.dumps({"errors": [{"message": echo}]})),
            "403": (403, "application/json", json.dumps({"errors": [{"message": echo}]})),
            "500": (500, "text/html", f"<html><pre>{echo}</pre></html>"),
            "html": (200, "text/html; charset=utf-8", f"<html><body>Login<pre>{echo}</pre></body></html>"),
            "malformed": (200, "application/json", '{"data": [' + json.dumps(echo)),
            "redirect": (200, "application/json", '{"oops": ' + json.dumps(echo)),  # the other host: garbage
        }[fault]
        self._answer(code, kind, body)

    def _answer(self, code: int, kind: str, body: str, **headers: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        if code == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="x"')
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def courses(base: str, course_folder: Path) -> dict[str, dict]:
    return {
        "canvas": {"source": "canvas", "url": base, "course_id": 4242, "token_env": "CANVAS_TOKEN"},
        "studip": {"source": "studip", "url": base, "course_id": "a07535cf2f8a72df33c12ddfa4b53dde",
                   "username_env": "STUDIP_USER", "password_env": "STUDIP_PASSWORD"},
        "ilias": {"source": "ilias", "webdav_url": f"{base}/webdav.php/uni/ref_42/",
                  "username_env": "ILIAS_USER", "password_env": "ILIAS_PASSWORD"},
        "zenodo": {"source": "zenodo", "url": base, "record": "5", "latest": False, "token_env": "ZENODO_TOKEN"},
        "moodle": {"source": "moodle", "url": base, "course_id": 4711, "token_env": "MOODLE_TOKEN"},
        # The source works; pushing the snapshot to the mirror hits the fault.
        "mirrored": {"source": "local", "path": str(course_folder), "mirror": f"{base}/mirror.git",
                     "mirror_token_env": "MIRROR_TOKEN"},
    }


def data_dir_leaks(data: Path) -> list[str]:
    """Secrets in any file of the data dir, and in every object of every repo, decompressed."""
    found = [f"{path}: {secret}" for path in data.rglob("*") if path.is_file() for secret in leaks(path.read_bytes())]
    for repo in (data / "repos").glob("*.git"):
        objects = subprocess.run(["git", "--git-dir", str(repo), "cat-file", "--batch-all-objects", "--batch"],
                                 check=True, capture_output=True).stdout
        found += [f"{repo} objects: {secret}" for secret in leaks(objects)]
    return found


def cli(config_path: Path, *args: str) -> str:
    process = subprocess.run([sys.executable, "-m", "f2git.cli", "--config", str(config_path), *args],
                             capture_output=True, text=True, cwd=ROOT, timeout=300,
                             env={"PATH": "/usr/bin:/bin", "HOME": str(config_path.parent), **ENV})
    return process.stdout + process.stderr


@pytest.fixture
def course_folder(tmp_path) -> Path:
    folder = tmp_path / "course"
    folder.mkdir()
    (folder / "README.md").write_text("# course\n")
    return folder


@pytest.mark.parametrize("fault", FAST_FAULTS)
def test_cli_outputs_and_data_dir_never_show_a_credential(tmp_path, course_folder, fault):
    with EchoingServer("redirect") as other, EchoingServer(fault, other) as server:
        config_path = write_config(tmp_path / "f2git.toml", {"data_dir": "data"}, courses(server.url, course_folder))
        output = cli(config_path, "sync", "--json") + cli(config_path, "-v", "sync", "--json")
        results = _results(output)
        output += cli(config_path, "status", "--json") + cli(config_path, "status") + cli(config_path, "check")
        assert server.seen_headers, "the error path was not reached"
        if fault == "redirect":  # credentials stay on their own host
            assert other.seen_headers and not leaks("".join(other.seen_headers))
    for name in ("canvas", "studip", "ilias", "zenodo", "moodle"):
        assert results[name]["ok"] is False and results[name]["error"], results[name]
    assert results["mirrored"]["ok"] is True and results["mirrored"]["mirror_error"]
    assert not leaks(output), output
    assert not data_dir_leaks(tmp_path / "data")


def _results(output: str) -> dict[str, dict]:
    found = {}
    for line in output.splitlines():
        if line.startswith("{"):
            data = json.loads(line)
            found.setdefault(data["course"], data)
    return found


def quick(connector) -> None:
    """Retries without backoff waits and short timeouts, so slow faults take no time here."""
    session = getattr(connector, "http", None) or getattr(connector, "session", None)
    session.sleep = lambda seconds: None
    session.timeout = (0.5, 0.3)


@pytest.mark.parametrize("fault", SLOW_FAULTS + FAST_FAULTS)
def test_syncs_logs_and_status_never_show_a_credential(tmp_path, course_folder, caplog, fault):
    caplog.set_level(logging.DEBUG)
    with EchoingServer("redirect") as other, EchoingServer(fault, other) as server:
        config = parse({"server": {"data_dir": str(tmp_path / "data")},
                        "courses": courses(server.url, course_folder)}, tmp_path / "f2git.toml", ENV)
        results = []
        for course in config.courses.values():
            connector = course.connector(env=ENV)
            if course.source != "local":
                quick(connector)
            results.append(sync_course(config, course, connector=connector))
    text = json.dumps([r.to_json() for r in results]) + caplog.text
    text += json.dumps([status.read(config, name).to_json() for name in config.courses])
    assert all(not r.ok for r in results if r.course != "mirrored")
    assert not leaks(text), text
    assert not data_dir_leaks(tmp_path / "data")


def test_server_api_dashboard_clicks_and_logs_never_show_a_credential(tmp_path, course_folder, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    for key, value in ENV.items():  # the server's connectors read their secrets from its environment
        monkeypatch.setenv(key, value)
    with EchoingServer("redirect") as other, EchoingServer("401", other) as source:
        def make(port):
            return parse({"server": {"data_dir": str(tmp_path / "data"), "port": port},
                          "courses": courses(source.url, course_folder)}, tmp_path / "f2git.toml", ENV)

        with RunningServer(make) as server:
            answers = []
            for name in ("canvas", "studip", "ilias", "zenodo", "moodle", "mirrored"):
                answers.append(json.dumps(server.post_json(f"/api/courses/{name}/refresh")))
                # A student's click on a course without a snapshot shows the last error.
                answers.append(repr(server.request("GET", f"/git/{name}/info/refs?service=git-upload-pack")))
                answers.append(repr(server.request("GET", f"/api/courses/{name}")))
                answers.append(repr(server.request("GET", f"/courses/{name}")))
            answers.append(repr(server.request("GET", "/api/courses")))
            answers.append(repr(server.request("GET", "/")))
            answers.append(repr(server.request("GET", "/metrics")))
    text = "\n".join(answers) + caplog.text
    assert "Canvas" in text and "401" in text  # the errors themselves are shown
    assert not leaks(text), text
    assert not data_dir_leaks(tmp_path / "data")


def test_a_committed_snapshot_holds_no_credential(tmp_path):
    """A successful sync: the repo (history, hidden sync state) and status hold no token."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = FakeCanvas(mock)
        fake.publish({"README.md": b"# course", "week1/notes.md": b"notes"})
        config = parse({"server": {"data_dir": str(tmp_path / "data")},
                        "courses": {"cs101": {"source": "canvas", "url": "https://canvas.example.edu",
                                              "course_id": 4242, "token_env": "CANVAS_TOKEN"}}},
                       tmp_path / "f2git.toml", {"CANVAS_TOKEN": CANVAS_FAKE_TOKEN})
        result = sync_course(config, config.courses["cs101"], connector=fake.connector())
    assert result.ok and CourseRepo.for_course(config, "cs101").head()
    assert not data_dir_leaks(tmp_path / "data")



def test_the_access_log_never_shows_a_query_string(tmp_path, caplog):
    """A client may send `?token=…` (f2git ignores it); the access log must not keep it."""
    import logging
    import urllib.error
    import urllib.request

    from f2git.config import parse
    from tests.serverhelpers import RunningServer

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a")

    def config(port):
        return parse({"server": {"port": port, "data_dir": str(tmp_path / "data")},
                      "courses": {"demo": {"source": "local", "path": str(tmp_path / "src")}}},
                     tmp_path / "f2git.toml", {})

    with caplog.at_level(logging.INFO, logger="tornado.access"), RunningServer(config) as server:
        for path in ("/git/demo/info/refs?service=git-upload-pack&token=tok-SECRET-q1",
                     "/api/courses/nope?token=tok-SECRET-q2"):
            try:
                urllib.request.urlopen(server.url + path, timeout=30).read()
            except urllib.error.HTTPError:
                pass
    assert "/git/demo/info/refs" in caplog.text and "/api/courses/nope" in caplog.text
    assert "SECRET" not in caplog.text and "token=" not in caplog.text
