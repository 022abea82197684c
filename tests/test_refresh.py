"""Refresh on click through a running server: one source listing per change, not per
student; a slow or failing source never costs students the last snapshot."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import connectors
from f2git.store import CourseRepo
from tests import fakesource
from tests.repohelpers import git, machine_git_config_ignored  # noqa: F401 (autouse)
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
