"""Refresh on click through a running server: one source listing per change, not per
student; a slow or failing source never costs students the last snapshot."""
from __future__ import annotations

import asyncio
import html
import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

import connectors
from f2git import cli
from f2git.server.app import Schedule
from f2git.server.lanes import SyncLanes
from f2git.server.refresh import Refresher
from f2git.store import CourseRepo
from tests import fakesource
from tests.httpserver import FileServer
from tests.repohelpers import Student, git, machine_git_config_ignored  # noqa: F401 (autouse)
from tests.serveprocess import write_config
from tests.serverhelpers import ManualClock, RunningServer, config_factory, wait_until

COURSE = "cs101"
FILES = {"README.md": b"# CS 101\n", "week1/intro.ipynb": b'{"cells": []}\n'}


@pytest.fixture
def bucket(memory_source, monkeypatch, request):
    """The course's released files and its listing counter (tests/memsource.py)."""
    monkeypatch.setitem(connectors.SOURCES, "gated", "tests.fakesource:GatedConnector")
    name = f"refresh-{request.node.name}"
    yield memory_source(name, FILES)
    fakesource.GATES.pop(name, None)


@pytest.fixture
def gate(bucket, request):
    """Holds the course's listing while closed; always opened at the end so the server can stop."""
    name = f"refresh-{request.node.name}"
    fakesource.GATES[name] = held = fakesource.Gate()
    held.open()
    yield held
    held.open()


def serve(tmp_path, request, **server):
    courses = {COURSE: {"source": "gated", "bucket": f"refresh-{request.node.name}", "schedule": 0}}
    return RunningServer(config_factory(tmp_path, courses, **server))


def info_refs(server: RunningServer) -> bytes:
    status, headers, body = server.request("GET", f"/git/{COURSE}/info/refs?service=git-upload-pack")
    assert status == 200, body
    assert headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
    return body


def advertised_main(server: RunningServer) -> str:
    listed = git("-c", "protocol.version=0", "ls-remote", server.git_url(COURSE), "refs/heads/main")
    return listed.stdout.decode().split()[0]


def first_snapshot(server: RunningServer) -> str:
    """The course's first snapshot, through the API (a first sync may take longer than refresh_wait)."""
    status, result = server.post_json(f"/api/courses/{COURSE}/refresh")
    assert status == 200 and result["ok"], result
    return result["commit"]


def head(server: RunningServer) -> str | None:
    return CourseRepo.for_course(server.config, COURSE).head()


def test_fifty_concurrent_clicks_share_one_listing(tmp_path, request, bucket, gate):
    with serve(tmp_path, request, refresh_ttl=0, refresh_wait=60) as server:
        first = advertised_main(server)
        assert bucket.lists == 1
        bucket.files["week2/new.ipynb"] = b"new\n"
        gate.close()
        with ThreadPoolExecutor(max_workers=50) as pool:
            clicks = [pool.submit(info_refs, server) for _ in range(50)]
            # Every click is in before the (slow) listing may finish: they all wait for one refresh.
            assert wait_until(lambda: server.call(lambda: server.server.refresher.waiting(COURSE)) == 50,
                              timeout=30)
            gate.open()
            answers = [click.result(timeout=60) for click in clicks]
        new = head(server)
        assert new != first
        assert all(new.encode() in answer for answer in answers)
        assert bucket.lists == 2


def test_a_fetch_refreshes_once_not_per_request(tmp_path, request, bucket):
    """v2 makes one GET and then POSTs; only the GET (the start of a fetch) refreshes."""
    with serve(tmp_path, request, refresh_ttl=0) as server:
        git("-c", "protocol.version=2", "clone", "--depth", "1", server.git_url(COURSE), tmp_path / "a")
        assert bucket.lists == 1
        git("-c", "protocol.version=2", "fetch", cwd=tmp_path / "a")
        assert bucket.lists == 2


def test_clicks_within_the_ttl_ask_the_source_nothing(tmp_path, request, bucket):
    with serve(tmp_path, request, refresh_ttl=3600) as server:
        git("clone", "--depth", "1", server.git_url(COURSE), tmp_path / "first")
        assert bucket.lists == 1
        bucket.files["README.md"] = b"changed, but within the TTL\n"
        for number in range(5):
            git("clone", "--depth", "1", server.git_url(COURSE), tmp_path / f"student{number}")
        assert bucket.lists == 1 and bucket.opens == len(FILES)
        assert (tmp_path / "student4" / "README.md").read_bytes() == FILES["README.md"]


def test_a_restarted_server_remembers_the_last_check(tmp_path, request, bucket):
    """The TTL survives a restart: the last check is read back from the status records."""
    with serve(tmp_path, request, refresh_ttl=3600) as server:
        first = advertised_main(server)
    assert bucket.lists == 1
    with serve(tmp_path, request, refresh_ttl=3600) as server:
        assert advertised_main(server) == first
    assert bucket.lists == 1


def test_a_slow_source_costs_a_click_at_most_refresh_wait(tmp_path, request, bucket, gate):
    wait = 1.0
    with serve(tmp_path, request, refresh_ttl=0, refresh_wait=wait) as server:
        old = first_snapshot(server)
        bucket.files["README.md"] = b"# CS 101, week 2\n"
        gate.close()
        started = time.monotonic()
        assert advertised_main(server) == old  # the last snapshot, without waiting for the source
        took = time.monotonic() - started
        assert wait <= took < wait + 1.5
        assert gate.reached.is_set()
        gate.open()
        assert wait_until(lambda: not server.call(lambda: server.server.refresher.is_running(COURSE)))
        new = advertised_main(server)
        assert new != old
        shown = git("--git-dir", CourseRepo.for_course(server.config, COURSE).path, "show", f"{new}:README.md")
        assert shown.stdout == b"# CS 101, week 2\n"


def test_a_failing_source_keeps_the_last_snapshot_and_says_why(tmp_path, request, bucket):
    with serve(tmp_path, request, refresh_ttl=0) as server:
        old = advertised_main(server)
        bucket.files["README.md"] = b"never seen\n"
        bucket.fail_listing = "Canvas answered 503 Service Unavailable"
        git("clone", "--depth", "1", server.git_url(COURSE), tmp_path / "student")
        assert (tmp_path / "student" / "README.md").read_bytes() == FILES["README.md"]
        assert advertised_main(server) == old
        course = server.get_json(f"/api/courses/{COURSE}")
        assert course["last_error"] == "Canvas answered 503 Service Unavailable"
        assert course["commit"] == old
        listed = server.get_json("/api/courses")["courses"]
        assert [c["last_error"] for c in listed] == ["Canvas answered 503 Service Unavailable"]


def test_a_failed_source_is_asked_again_only_after_the_ttl(tmp_path, request, bucket):
    clock = ManualClock()
    courses = {COURSE: {"source": "gated", "bucket": f"refresh-{request.node.name}", "schedule": 0}}
    with RunningServer(config_factory(tmp_path, courses, refresh_ttl=60), clock=clock) as server:
        old = advertised_main(server)
        bucket.fail_listing = "ILIAS is down"
        clock.advance(61)
        for _ in range(3):
            assert advertised_main(server) == old
        assert bucket.lists == 2  # one failed try; then the last snapshot until the TTL passes again
        clock.advance(61)
        advertised_main(server)  # served at once; the retry runs in the background
        wait_until(lambda: bucket.lists == 3, timeout=30)


def test_a_course_without_snapshot_answers_a_clear_git_error(tmp_path, request, bucket):
    bucket.fail_listing = "Stud.IP rejected the credentials (HTTP 401)\nCheck username_env."
    with serve(tmp_path, request, refresh_ttl=0) as server:
        cloned = git("clone", "--depth", "1", server.git_url(COURSE), tmp_path / "student", check=False)
        assert cloned.returncode != 0
        assert (b"remote error: course cs101 has no snapshot yet: Stud.IP rejected the credentials (HTTP 401)"
                b" Check username_env.\n" in cloned.stderr)  # one line, as git prints one
        assert not (tmp_path / "student").exists()  # never an empty repo


def test_a_first_sync_still_running_answers_a_clear_git_error(tmp_path, request, bucket, gate):
    gate.close()
    with serve(tmp_path, request, refresh_ttl=0, refresh_wait=0.2) as server:
        listed = git("clone", server.git_url(COURSE), tmp_path / "student", check=False)  # ls-remote succeeds
        assert listed.returncode != 0
        assert b"remote error: course cs101 has no snapshot yet: the first sync is still running" in listed.stderr
        gate.open()
        assert wait_until(lambda: head(server) is not None)


def test_a_refresh_in_flight_is_shared_by_clicks_and_the_api(tmp_path, request, bucket, gate):
    with serve(tmp_path, request, refresh_ttl=0, refresh_wait=0.2) as server:
        first_snapshot(server)
        bucket.files["README.md"] = b"new\n"
        gate.close()
        advertised_main(server)  # starts the refresh, gives up waiting after 0.2 s
        answer: dict = {}
        api = threading.Thread(target=lambda: answer.update(result=server.post_json(f"/api/courses/{COURSE}/refresh")))
        api.start()
        gate.open()
        api.join(timeout=60)
        status, result = answer["result"]
        assert status == 200 and result["ok"] and result["modified"] == 1
        assert bucket.lists == 2


def test_the_schedule_refreshes_without_clicks(tmp_path, request, bucket):
    finished = threading.Event()
    courses = {COURSE: {"source": "gated", "bucket": f"refresh-{request.node.name}", "schedule": 0.5}}
    with RunningServer(config_factory(tmp_path, courses, refresh_ttl=3600)) as server:
        server.call(lambda: server.server.refresher.on_result(lambda result: finished.set()))
        # The course has never been checked, so its first scheduled refresh is due at once.
        assert finished.wait(timeout=30)
        assert head(server) is not None
        finished.clear()
        bucket.files["week2/new.ipynb"] = b"new\n"
        assert finished.wait(timeout=30)
        assert wait_until(lambda: "week2/new.ipynb" in CourseRepo.for_course(server.config, COURSE).files(head(server)))
        course = server.get_json(f"/api/courses/{COURSE}")
        assert course["next_refresh"] is not None and course["next_refresh"] > time.time() - 1


def test_while_the_source_stays_down_clicks_do_not_wait_for_each_retry(tmp_path, request, bucket, gate):
    """After a failed sync, a stale click starts the retry in the background and gets the last
    snapshot at once, instead of every student waiting out refresh_wait while the LMS is down."""
    clock = ManualClock()
    courses = {COURSE: {"source": "gated", "bucket": f"refresh-{request.node.name}", "schedule": 0}}
    make = config_factory(tmp_path, courses, refresh_ttl=60, refresh_wait=120)
    with RunningServer(make, clock=clock) as server:
        old = advertised_main(server)
        bucket.fail_listing = "Canvas answered 503 Service Unavailable"
        clock.advance(61)
        assert advertised_main(server) == old  # this click saw the failure happen

        gate.close()  # the next retry hangs like a dead LMS
        bucket.files["README.md"] = b"# fixed\n"
        clock.advance(61)
        answered = []
        click = threading.Thread(target=lambda: answered.append(advertised_main(server)))
        click.start()
        click.join(60)
        assert answered == [old], "the click waited for a retry of a failing source"
        assert gate.reached.wait(10)  # the retry did start, and is held at the dead LMS

        bucket.fail_listing = None
        gate.open()  # the LMS is back: the retry finishes and the next click gets the change
        wait_until(lambda: not server.get_json(f"/api/courses/{COURSE}")["refreshing"], timeout=30)
        assert advertised_main(server) != old


# -- fair sync capacity: hung courses, clicks and scheduled checks --------------------------

def test_hung_courses_do_not_hold_back_a_healthy_courses_refresh_now_and_clicks(tmp_path):
    """Five courses whose source trickles one byte a second (no read ever times out) hang
    their syncs; another course's "Refresh now" and clicks are still served."""
    slow, healthy = FileServer().start(), FileServer().start()
    try:
        slow.put("/notes.ipynb", b"x" * 600)
        slow.fault = "trickle"
        healthy.put("/notes.ipynb", b'{"cells": []}\n')
        courses = {f"hung{n}": {"source": "http", "url": slow.url("/notes.ipynb"), "schedule": 0} for n in range(5)}
        courses["fine"] = {"source": "http", "url": healthy.url("/notes.ipynb"), "schedule": 0}
        with RunningServer(config_factory(tmp_path, courses, refresh_ttl=0, refresh_wait=1)) as server:
            refresher = server.server.refresher
            for n in range(5):  # as a click or "Refresh now" on each would
                server.call(lambda n=n: refresher.start(server.config.courses[f"hung{n}"]))
            # More hung courses than workers: the fifth still got a thread.
            assert wait_until(lambda: len(slow.requests) == 5, timeout=30), len(slow.requests)

            status, _, body = server.request("POST", "/api/courses/fine/refresh", body=b"", timeout=30)
            assert status == 200 and json.loads(body)["ok"], body
            commit = json.loads(body)["commit"]
            asked = len(healthy.requests)
            listed = git("ls-remote", server.git_url("fine"), "refs/heads/main")  # a click: refreshes (TTL 0)
            assert listed.stdout.decode().split()[0] == commit
            assert len(healthy.requests) > asked
            hung = [server.get_json(f"/api/courses/hung{n}")["refreshing"] for n in range(5)]
            assert hung == [True] * 5 and len(slow.requests) == 5
            slow.stop()  # the sources hang up: the hung syncs fail and the server can stop
    finally:
        slow.stop()
        healthy.stop()


def test_clicks_go_ahead_of_scheduled_checks_and_a_slow_sync_frees_its_worker():
    async def scenario() -> None:
        lanes = SyncLanes(workers=1, limit=3, slow_after=3600)
        started: list[str] = []
        release = threading.Event()

        def sync(name: str):
            def run() -> str:
                started.append(name)
                if name == "first":
                    release.wait(30)
                return name
            return run

        first = lanes.submit("first", sync("first"), urgent=True)
        scheduled = lanes.submit("scheduled", sync("scheduled"), urgent=False)
        joined = lanes.submit("joined", sync("joined"), urgent=False)
        click = lanes.submit("click", sync("click"), urgent=True)
        lanes.hurry(joined)  # a click joins a scheduled check that has not started yet
        while not started:
            await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(first.future, scheduled.future, joined.future, click.future)
        assert started == ["first", "joined", "click", "scheduled"]

        # A sync past slow_after stops holding the only worker: the next one runs meanwhile.
        lanes.slow_after = 0.1
        hanging = threading.Event()
        stuck = lanes.submit("stuck", lambda: hanging.wait(30), urgent=True)
        other = lanes.submit("other", lambda: "done", urgent=False)
        assert await asyncio.wait_for(other.future, timeout=30) == "done"
        assert not stuck.future.done()
        hanging.set()
        await stuck.future
        lanes.close()

    asyncio.run(scenario())


def test_scheduled_checks_are_spread_over_courses_and_the_same_on_every_start(make_config, memory_source):
    names = [f"course{n}" for n in range(200)]
    config = make_config({name: {"source": "memory", "bucket": name, "schedule": 600} for name in names})
    now = datetime.now(timezone.utc)

    def first_runs(checked: float) -> list[float]:
        refresher = Refresher(config)
        for name in names:
            refresher.state(name).checked = checked
        schedule = Schedule(config, refresher)
        return [(schedule.first_run(name, 600, now) - now).total_seconds() for name in names]

    never = first_runs(0.0)  # a new course gets its first snapshot soon
    assert never == first_runs(0.0)
    assert all(0 <= delay < Schedule.FIRST_SPREAD for delay in never)
    assert max(Counter(int(delay) for delay in never).values()) <= 40  # 20 a second on average

    stale = first_runs(now.timestamp() - 3600)  # checked before the server stopped
    assert all(0 <= delay < Schedule.SPREAD for delay in stale)
    assert max(Counter(int(delay) for delay in stale).values()) <= 5

    recent = first_runs(now.timestamp() - 100)  # waits out its interval, then its share
    assert all(500 <= delay < 500 + Schedule.SPREAD for delay in recent)


# -- one click, one refresh ------------------------------------------------------------------

def test_one_nbgitpuller_click_costs_one_listing(tmp_path, request, bucket):
    """nbgitpuller runs `ls-remote --heads`, `ls-remote --tags`, then `clone` or `fetch`; with
    refresh_ttl = 0 only the first of them refreshes. Its fetch ends the click."""
    courses = {COURSE: {"source": "gated", "bucket": f"refresh-{request.node.name}", "schedule": 0}}
    with RunningServer(config_factory(tmp_path, courses, refresh_ttl=0, click_window=60)) as server:
        student = Student(server.git_url(COURSE), tmp_path / "home" / COURSE)
        student.click()  # the first click makes the first snapshot
        assert bucket.lists == 1
        bucket.files["week2/new.ipynb"] = b"new\n"
        student.click()
        assert bucket.lists == 2
        assert (student.path / "week2" / "new.ipynb").read_bytes() == b"new\n"
        student.click()  # the last click fetched a pack: this is a new click
        assert bucket.lists == 3


# -- what the server knows: in memory, without git -------------------------------------------

def test_status_reads_ask_git_nothing_once_the_heads_are_known(tmp_path, request, bucket, monkeypatch):
    """The API, the dashboard and pullhook's /remote read the server's memory, not git."""
    asked = []
    head = CourseRepo.head
    monkeypatch.setattr(CourseRepo, "head", lambda repo: asked.append(repo.path) or head(repo))
    with serve(tmp_path, request, refresh_ttl=3600) as server:
        commit = first_snapshot(server)
        assert wait_until(lambda: server.call(lambda: server.server.refresher.state(COURSE).head_known))
        asked.clear()
        for _ in range(3):
            assert server.get_json(f"/api/courses/{COURSE}")["commit"] == commit
            assert server.get_json("/api/courses")["courses"][0]["commit"] == commit
            assert server.get_json(f"/api/courses/{COURSE}/remote")["mirror"] is None
            assert server.request("GET", "/")[0] == 200
            assert advertised_main(server) == commit  # a click within the TTL
            assert server.request("GET", "/healthz")[::2] == (200, b"ok")
        assert asked == []


def test_a_restarted_server_loads_heads_off_the_start(tmp_path, request, bucket, monkeypatch):
    """Start-up reads status files only; the first click after it still gets the snapshot."""
    with serve(tmp_path, request, refresh_ttl=3600) as server:
        commit = first_snapshot(server)
    asked = []
    head = CourseRepo.head
    monkeypatch.setattr(CourseRepo, "head", lambda repo: asked.append(repo.path) or head(repo))
    refresher = Refresher(config_factory(tmp_path, {COURSE: {"source": "gated", "schedule": 0,
                                                              "bucket": f"refresh-{request.node.name}"}})(8765))
    assert asked == [] and refresher.last_check(COURSE) > 0
    with serve(tmp_path, request, refresh_ttl=3600) as server:
        assert advertised_main(server) == commit
    assert bucket.lists == 1


# -- a failure the disk cannot record --------------------------------------------------------

def test_a_failure_the_disk_cannot_record_is_shown_by_api_dashboard_healthz_and_status(tmp_path, capsys):
    """The status folder cannot be written (here: a file stands where it should be, which stops
    root too): the server keeps the outcome in memory and says so everywhere."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "README.md").write_text("# CS 101\n")
    courses = {COURSE: {"source": "local", "path": str(source), "schedule": 0}}
    config_path = write_config(tmp_path / "f2git.toml", {"data_dir": str(tmp_path / "data")}, courses)
    with RunningServer(config_factory(tmp_path, courses, refresh_ttl=0)) as server:
        old = first_snapshot(server)

        status_dir = tmp_path / "data" / "status"
        shutil.rmtree(status_dir)
        status_dir.write_text("not a folder\n")
        code, _, body = server.request("GET", "/healthz")
        assert code == 503 and body.startswith(b"degraded: data dir: cannot write to ") and str(status_dir).encode() in body

        shutil.rmtree(source)  # the source breaks, and the disk cannot record it
        code, failed = server.post_json(f"/api/courses/{COURSE}/refresh")
        assert code == 200 and not failed["ok"]
        course = server.get_json(f"/api/courses/{COURSE}")
        assert course["last_error"] == failed["error"] and course["commit"] == old
        assert "could not record the status" in course["status_error"]
        assert server.get_json("/api/courses")["courses"][0]["last_error"] == failed["error"]
        page = server.request("GET", "/")[2].decode()
        assert html.escape(failed["error"], quote=False) in page and "Up to date" not in page
        code, _, body = server.request("GET", "/healthz")
        assert code == 503 and f"course {COURSE}: could not record the status".encode() in body

        source.mkdir()  # the source is back: the snapshot is fine, its record is not: not OK either
        (source / "README.md").write_text("# CS 101, new\n")
        code, synced = server.post_json(f"/api/courses/{COURSE}/refresh")
        assert synced["ok"] and synced["status_error"]
        course = server.get_json(f"/api/courses/{COURSE}")
        assert course["commit"] == synced["commit"] != old
        assert course["last_error"] == course["status_error"] == synced["status_error"]

    assert cli.main(["--config", str(config_path), "status"]) == 1
    assert f"cannot write to {status_dir}" in capsys.readouterr().err


@pytest.fixture
def read_only_later(tmp_path):
    """The data dir on its own small tmpfs, and a function that remounts it read-only (as a disk
    the kernel turned read-only after errors). Where mounting is not permitted, a file standing
    where the status folder should be makes the same writes fail."""
    data = tmp_path / "data"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(data)],
                             capture_output=True).returncode == 0

    def make_read_only() -> None:
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(data)], check=True)
        else:
            shutil.rmtree(data / "status")
            (data / "status").write_text("not a folder\n")

    yield make_read_only
    if mounted:
        subprocess.run(["umount", "-l", str(data)], check=True)


def test_a_read_only_data_dir_is_degraded_and_the_failure_still_shows(tmp_path, read_only_later):
    source = tmp_path / "source"
    source.mkdir()
    (source / "README.md").write_text("# CS 101\n")
    courses = {COURSE: {"source": "local", "path": str(source), "schedule": 0}}
    with RunningServer(config_factory(tmp_path, courses, refresh_ttl=0)) as server:
        old = first_snapshot(server)
        read_only_later()
        code, _, body = server.request("GET", "/healthz")
        assert code == 503 and body.startswith(b"degraded: data dir: cannot write to "), body

        (source / "README.md").write_text("# CS 101, new\n")
        code, failed = server.post_json(f"/api/courses/{COURSE}/refresh")
        assert code == 200 and not failed["ok"] and failed["error"]
        course = server.get_json(f"/api/courses/{COURSE}")
        assert course["last_error"] == failed["error"] and course["commit"] == old
        assert advertised_main(server) == old  # students still get the last snapshot
        assert html.escape(failed["error"], quote=False) in server.request("GET", "/")[2].decode()
