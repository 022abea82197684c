"""Faults while syncing: a crashed server, sources that fail, break off, lie about lengths,
hang or throttle, and a full disk. Every time the last complete snapshot stays served, the
error is recorded in words, the repo stays fsck-clean, and the next run completes."""
from __future__ import annotations

import errno
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import responses

from connectors.http import HttpConnector, HttpOptions
from f2git import status
from f2git.config import load, parse
from f2git.snapshot import sync_course
from f2git.store import CourseRepo, SnapshotWriter
from tests.httpserver import FileServer
from tests.serveprocess import ServeProcess, write_config
from tests.archivefiles import zip_bytes
from tests.canvasfake import BASE as CANVAS, TOKEN, FakeCanvas
from tests.repocheck import fsck_clean, snapshot, write_course


def clone_files(repo: CourseRepo, target: Path) -> dict[str, bytes]:
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{repo.path}", str(target)],
                   check=True, capture_output=True)
    return {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*")
            if p.is_file() and p.relative_to(target).parts[0] != ".git"}


# --- kill -9 of the server in the middle of syncs ------------------------------------------------

def test_kill_9_of_the_server_during_syncs_leaves_a_complete_snapshot(tmp_path):
    source = tmp_path / "source"
    config_path = write_config(tmp_path / "f2git.toml", {"data_dir": "data", "refresh_ttl": 0},
                               {"big": {"source": "local", "path": str(source), "schedule": 0}})
    repo = CourseRepo.for_course(load(config_path), "big")
    generations = [write_course(source, 0)]
    with ServeProcess(config_path) as server:
        assert server.post("/api/courses/big/refresh")[1]["ok"]
        generations.append(write_course(source, 1))
        started = time.monotonic()
        assert server.post("/api/courses/big/refresh")[1]["ok"]
        duration = time.monotonic() - started
    assert snapshot(repo) == generations[-1]

    kills = attempt = 0
    scale = 1.0  # halved whenever a sync beat its kill: a busy machine measured a slow sync
    while kills < 6 and attempt < 12:
        attempt += 1
        generations.append(write_course(source, attempt + 1))
        server = ServeProcess(config_path).start()
        answered = threading.Event()

        def refresh(server=server, answered=answered):
            try:
                server.request("POST", "/api/courses/big/refresh", b"{}", timeout=60)
                answered.set()
            except OSError:  # the server was killed mid-answer
                pass

        threading.Thread(target=refresh, daemon=True).start()
        # kills spread over the first ~70% of a measured sync: later ones would often come after
        # the end when the machine is less busy than at the measurement
        if not answered.wait(scale * duration * (kills + 0.5) / 8):
            server.kill()
            kills += 1
        else:
            scale /= 2
        server.stop()
        fsck_clean(repo)
        assert snapshot(repo) in (generations[-2], generations[-1]), f"kill {attempt}: a torn snapshot"
        # The server's git children (fast-import) die with their input: nothing keeps writing.
        assert not _processes_in(repo.path), f"kill {attempt}: git still running in the repo"
        # The next run (a restarted server) completes and serves the newest generation.
        with ServeProcess(config_path) as again:
            result = again.post("/api/courses/big/refresh")[1]
        assert result["ok"], result
        assert snapshot(repo) == generations[-1]
    assert kills >= 4, "the sync finished before most kills: make the course larger"


def _processes_in(path: Path) -> list[int]:
    """Processes whose command line names `path`, after giving orphans a moment to notice EOF."""
    deadline = time.monotonic() + 10
    while True:
        found = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if str(path).encode() in cmdline:
                found.append(int(entry))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)  # an orphaned fast-import exits on its own once it reads EOF


# --- sources that fail -----------------------------------------------------------------------------

@pytest.fixture
def canvas(tmp_path):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = FakeCanvas(mock)
        config = parse({"server": {"data_dir": str(tmp_path / "data")},
                        "courses": {"cs101": {"source": "canvas", "url": CANVAS, "course_id": 4242,
                                              "token_env": "CANVAS_TOKEN"}}},
                       tmp_path / "f2git.toml", {"CANVAS_TOKEN": TOKEN})
        yield fake, config, CourseRepo.for_course(config, "cs101")


def test_server_error_on_page_three_of_a_canvas_listing_keeps_the_last_snapshot(canvas):
    fake, config, repo = canvas
    course = config.courses["cs101"]
    published = {f"week{i}/notes.md": f"notes {i}".encode() for i in range(9)}
    fake.publish(published)
    first = sync_course(config, course, connector=fake.connector())
    assert first.ok and first.added == 9

    fake.put("week0/notes.md", b"edited")  # a change the failed sync must not half-apply
    fake.fail_page(3, [(500, {"Content-Type": "text/html"}, "<html>Internal Server Error</html>")] * 10)
    connector = fake.connector()
    failed = sync_course(config, course, connector=connector)
    assert not failed.ok and "500" in failed.error and "Canvas" in failed.error
    assert len(connector.sleeps) == 4  # bounded retries, then the whole listing fails
    assert repo.head() == first.commit and len(repo.log()) == 1
    record = status.read(config, "cs101")
    assert record.last_error == failed.error and record.last_success is not None and record.commit == first.commit
    # No deletion happened although pages 3 and later were never read.
    assert set(repo.files(repo.head())) == set(published)

    fake.injected.clear()
    healed = sync_course(config, course, connector=fake.connector())
    assert healed.ok and healed.modified == 1 and status.read(config, "cs101").last_error is None


@pytest.fixture
def web(tmp_path):
    with FileServer() as server:
        config = parse({"server": {"data_dir": str(tmp_path / "data")},
                        "courses": {"web": {"source": "http", "url": server.url("/course.zip")}}},
                       tmp_path / "f2git.toml", {})
        yield server, config, CourseRepo.for_course(config, "web")


def http_connector(url: str, sleeps: list | None = None, timeout: tuple[float, float] = (10.0, 60.0)) -> HttpConnector:
    connector = HttpConnector(HttpOptions(url=url), course="web")
    connector.session.sleep = (sleeps if sleeps is not None else []).append
    connector.session.timeout = timeout
    return connector


@pytest.mark.parametrize("fault, words", [("reset", "broke off"), ("truncate", "broke off after"), ("error", "500")],
                         ids=["connection closed mid-body", "fewer bytes than Content-Length", "server error"])
def test_broken_downloads_keep_the_last_snapshot_and_record_the_error(web, fault, words):
    server, config, repo = web
    course = config.courses["web"]
    server.put("/course.zip", zip_bytes({"a.txt": b"a" * 50_000, "b.txt": b"b"}))
    first = sync_course(config, course, connector=http_connector(server.url("/course.zip")))
    assert first.ok

    server.put("/course.zip", zip_bytes({"a.txt": b"A" * 50_000, "b.txt": b"B", "c.txt": b"c"}))
    server.fault = fault
    failed = sync_course(config, course, connector=http_connector(server.url("/course.zip")))
    assert not failed.ok and words in failed.error, failed.error
    assert repo.head() == first.commit
    assert status.read(config, "web").last_error == failed.error
    fsck_clean(repo)

    server.fault = None
    healed = sync_course(config, course, connector=http_connector(server.url("/course.zip")))
    assert healed.ok and healed.changed and set(repo.files(repo.head())) == {"a.txt", "b.txt", "c.txt"}


class SilentServer:
    """Accepts connections (the kernel does, from its backlog) and never answers a byte."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/course.zip"

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.socket.close()


def test_a_hanging_source_is_bounded_by_timeouts(tmp_path):
    with SilentServer() as silent:
        config = parse({"server": {"data_dir": str(tmp_path / "data")},
                        "courses": {"web": {"source": "http", "url": silent.url}}}, tmp_path / "f2git.toml", {})
        sleeps: list[float] = []
        connector = http_connector(silent.url, sleeps, timeout=(0.5, 0.3))
        started = time.monotonic()
        result = sync_course(config, config.courses["web"], connector=connector)
        elapsed = time.monotonic() - started
    assert not result.ok and "timed out waiting for an answer (after 5 tries)" in result.error, result.error
    assert len(sleeps) == 4  # every try timed out, none waited longer than the timeout
    assert elapsed < 5 * 0.5 + 5, elapsed
    assert status.read(config, "web").last_error == result.error


class ScriptedServer:
    """Answers GETs from a script of (status, headers, body); the last answer repeats."""

    def __init__(self, script: list[tuple[int, dict, bytes]]):
        self.script = list(script)
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.requests += 1
                code, headers, body = owner.script.pop(0) if len(owner.script) > 1 else owner.script[0]
                self.send_response(code)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/notes.txt"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_throttling_is_retried_after_retry_after(tmp_path):
    throttled = (429, {"Retry-After": "2"}, b"slow down")
    with ScriptedServer([throttled, throttled, (200, {"ETag": '"v1"'}, b"the notes")]) as server:
        config = parse({"server": {"data_dir": str(tmp_path / "data")},
                        "courses": {"web": {"source": "http", "url": server.url}}}, tmp_path / "f2git.toml", {})
        sleeps: list[float] = []
        result = sync_course(config, config.courses["web"], connector=http_connector(server.url, sleeps))
    assert result.ok and result.added == 1
    assert sleeps == [2.0, 2.0]  # Retry-After honoured, and nothing more
    repo = CourseRepo.for_course(config, "web")
    assert snapshot(repo) == {"notes.txt": b"the notes"}


def test_endless_throttling_gives_up_with_bounded_waits(tmp_path):
    with ScriptedServer([(429, {"Retry-After": "86400"}, b"")]) as server:
        config = parse({"server": {"data_dir": str(tmp_path / "data")},
                        "courses": {"web": {"source": "http", "url": server.url}}}, tmp_path / "f2git.toml", {})
        sleeps: list[float] = []
        result = sync_course(config, config.courses["web"], connector=http_connector(server.url, sleeps))
        assert server.requests == 5
    assert not result.ok and "throttl" in result.error, result.error
    assert len(sleeps) == 4 and max(sleeps) == 60.0  # a day's Retry-After is capped at a minute


# --- a full disk -----------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs as the data dir; without permission to mount, object writes fail with ENOSPC."""
    data = tmp_path / "data"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(data)],
                             capture_output=True).returncode == 0
    if mounted:
        yield data, None
        subprocess.run(["umount", "-l", str(data)], check=True)
        return
    real_blob = SnapshotWriter.blob

    def blob(self, source, size):  # an injected full disk: git could not write the object
        if size > 1024 * 1024:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_blob(self, source, size)

    patch = pytest.MonkeyPatch()
    patch.setattr(SnapshotWriter, "blob", blob)
    yield data, patch
    patch.undo()


def test_a_full_disk_commits_nothing_and_says_so(small_disk, memory_source, tmp_path):
    data, _ = small_disk
    bucket = memory_source("disk", {"README.md": b"# course\n", "week1/a.ipynb": b"{}"})
    config = parse({"server": {"data_dir": str(data)}, "courses": {"disk": {"source": "memory", "bucket": "disk"}}},
                   tmp_path / "f2git.toml", {})
    course = config.courses["disk"]
    repo = CourseRepo.for_course(config, "disk")
    first = sync_course(config, course)
    assert first.ok

    bucket.files["week2/video.bin"] = os.urandom(6 * 1024 * 1024)  # incompressible, larger than the disk
    bucket.files["README.md"] = b"# course, edited\n"
    full = sync_course(config, course)
    assert not full.ok and "the disk is full" in full.error, full.error
    assert repo.head() == first.commit and len(repo.log()) == 1
    fsck_clean(repo)
    assert clone_files(repo, tmp_path / "student") == {"README.md": b"# course\n", "week1/a.ipynb": b"{}"}

    # Once the source drops the huge file, the next sync fits: the failed one left no debris.
    del bucket.files["week2/video.bin"]
    healed = sync_course(config, course)
    assert healed.ok and healed.modified == 1, healed.error
    fsck_clean(repo)
    assert status.read(config, "disk").last_error is None
