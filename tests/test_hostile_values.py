"""Hostile values from a source: the end of time, JSON nested thousands deep, answers that never end.

Each is a value an LMS really sends (Moodle's "never" is 9999-12-31) or one a hostile or
broken server can send. None may stop `f2git serve`, stop another course, or crash
`f2git sync` with a traceback: a course fails alone with one clear error, or withholds an
item and counts it. The sources are real HTTP servers (tests/httpserver.py) and real
`f2git serve` / `f2git sync` processes.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from connectors._json import MAX_DEPTH, TooDeep, loads
from connectors._time import LATEST, epoch_time, iso_time, schedulable
from connectors.moodle import UNREADABLE, restriction
from f2git.server.releases import ReleaseSchedule
from tests.httpserver import FileServer
from tests.serveprocess import ServeProcess, rss, write_config

ROOT = Path(__file__).resolve().parent.parent
END_OF_TIME = ["9999-12-31T23:59:59Z", "9999-12-31T23:59:59-01:00", "9999-12-31", 1e20, 2 ** 62, float("inf")]


def f2git(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "f2git.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.fixture
def web():
    with FileServer() as server:
        yield server


@pytest.fixture
def healthy(tmp_path) -> Path:
    folder = tmp_path / "healthy"
    folder.mkdir()
    (folder / "README.md").write_text("hello\n")
    return folder


def zenodo(web: FileServer, **keys) -> dict:
    return {"source": "zenodo", "record": "7", "url": web.url(""), "latest": False, "schedule": 0, **keys}


def embargoed_record(until: str) -> bytes:
    return json.dumps({"id": 7, "files": [], "metadata": {"access_right": "embargoed", "embargo_date": until}}).encode()


# --- the time parser: any moment is read, the end of time is "not scheduled" --------------------

@pytest.mark.parametrize("value", END_OF_TIME)
def test_the_end_of_time_is_read_clamped_and_never_scheduled(value):
    moment = epoch_time(value) if isinstance(value, (int, float)) else iso_time(value)
    assert moment.tzinfo is not None and moment.year == 9999 or moment == LATEST
    assert schedulable(moment) is None
    scheduler = BackgroundScheduler()
    plans = ReleaseSchedule(scheduler, refresh=lambda course: None)
    plans.plan("cs101", value, catch_up=True)  # used to add 2 s to year 9999: OverflowError
    assert scheduler.get_jobs() == []


def test_a_negative_offset_at_the_start_of_time_is_clamped_too():
    assert iso_time("0001-01-01T00:00:00+01:00").year == 1
    assert epoch_time(-1e20).year == 1


def test_a_release_next_week_is_still_planned():
    scheduler = BackgroundScheduler()
    plans = ReleaseSchedule(scheduler, refresh=lambda course: None)
    plans.plan("cs101", (datetime.now(timezone.utc) + timedelta(days=7)).isoformat())
    assert [job.id for job in scheduler.get_jobs()] == ["release:cs101"]


@pytest.mark.parametrize("value", ["not a date", "nan", [1, 2], {"t": 1}])
def test_an_unreadable_next_release_in_a_record_plans_nothing(value):
    scheduler = BackgroundScheduler()
    ReleaseSchedule(scheduler, refresh=lambda course: None).plan("cs101", value, catch_up=True)
    assert scheduler.get_jobs() == []


def test_moodle_dates_at_the_end_of_time_withhold_and_plan_nothing():
    now = datetime.now(timezone.utc)
    for t in (253402300799, 1e20, 1e300):
        condition = json.dumps({"op": "&", "c": [{"type": "date", "d": ">=", "t": t}], "showc": [True]})
        release, reason = restriction(condition, now)
        assert not release.visible and reason is None
        assert release.at is None or schedulable(release.at, now) is None


# --- the JSON reader: nesting has a bound -------------------------------------------------------

@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 200_000])
def test_json_nested_too_deep_is_a_clear_value_error(depth):
    with pytest.raises(TooDeep, match="nested deeper than"):
        loads("[" * depth + "]" * depth)
    with pytest.raises(TooDeep):
        loads('{"a":' * depth + "1" + "}" * depth)


def test_json_of_ordinary_depth_reads():
    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None


def test_a_moodle_availability_nested_thousands_deep_is_withheld_as_unreadable():
    deep = '{"op":"&","c":[' * 3000 + "]}" * 3000
    release, reason = restriction(deep, datetime.now(timezone.utc))
    assert not release.visible and reason == UNREADABLE


# --- through `f2git sync --json` and `f2git serve` -----------------------------------------------

@pytest.mark.parametrize("answer", [b"[" * 100_000, b'{"id": 7, "files": ' + b"[" * 150 + b"]" * 150 + b"}"])
def test_sync_json_reports_deep_json_as_one_course_error(web, healthy, tmp_path, answer):
    web.put("/api/records/7", answer, content_type="application/json")
    config = write_config(tmp_path / "f2git.toml", {"data_dir": str(tmp_path / "data")},
                          {"deep": zenodo(web), "healthy": {"source": "local", "path": str(healthy)}})
    done = f2git(config, "sync", "--json")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = {line["course"]: line for line in map(json.loads, done.stdout.splitlines())}
    assert lines["healthy"]["ok"]
    assert lines["deep"]["ok"] is False and "nested deeper than" in lines["deep"]["error"], lines["deep"]
    status = f2git(config, "status", "deep", "--json")
    assert "nested deeper than" in status.stdout  # the outcome is recorded


def test_deep_json_through_a_running_server_fails_its_course_without_an_internal_error(web, healthy, tmp_path):
    web.put("/api/records/7", b'{"id": 7, "files": ' + b"[" * 50_000, content_type="application/json")
    config = write_config(tmp_path / "f2git.toml", {"data_dir": str(tmp_path / "data")},
                          {"deep": zenodo(web), "healthy": {"source": "local", "path": str(healthy), "schedule": 0}})
    with ServeProcess(config) as server:
        status, answer = server.post("/api/courses/deep/refresh")
        assert status == 200 and answer["ok"] is False and "nested deeper than" in answer["error"], answer
        status, answer = server.post("/api/courses/healthy/refresh")
        assert status == 200 and answer["ok"], answer
        log = server.output()
    assert "Traceback" not in log and "internal error" not in log and "RecursionError" not in log, log


@pytest.mark.parametrize("until", ["9999-12-31T23:59:59-01:00", "9999-12-31"])
def test_an_embargo_until_the_end_of_time_fails_one_course_and_serve_starts(web, healthy, tmp_path, until):
    web.put("/api/records/7", embargoed_record(until), content_type="application/json")
    config = write_config(tmp_path / "f2git.toml", {"data_dir": str(tmp_path / "data")},
                          {"never": zenodo(web), "healthy": {"source": "local", "path": str(healthy)}})
    done = f2git(config, "sync", "--json")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = {line["course"]: line for line in map(json.loads, done.stdout.splitlines())}
    assert lines["never"]["ok"] is False and "embargo until 9999-12-31" in lines["never"]["error"]
    with ServeProcess(config) as server:
        status, answer = server.post("/api/courses/healthy/refresh")
        assert status == 200 and answer["ok"], answer
        status, answer = server.post("/api/courses/never/refresh")
        assert status == 200 and answer["ok"] is False and "embargo" in answer["error"]
        log = server.output()
    assert "Traceback" not in log and "OverflowError" not in log, log


def test_a_status_record_at_the_end_of_time_never_stops_serve(healthy, tmp_path):
    courses = {name: {"source": "local", "path": str(healthy), "schedule": 0} for name in ("doomed", "healthy")}
    config = write_config(tmp_path / "f2git.toml", {"data_dir": str(tmp_path / "data")}, courses)
    assert f2git(config, "sync").returncode == 0
    # Written by an earlier f2git, or by any source before this one clamped: every start read it.
    record = tmp_path / "data" / "status" / "doomed.json"
    data = json.loads(record.read_text())
    data["next_release"] = "9999-12-31T23:59:59+00:00"
    record.write_text(json.dumps(data))
    with ServeProcess(config) as server:  # used to exit at start: OverflowError, at every start
        status, answer = server.post("/api/courses/healthy/refresh")
        assert status == 200 and answer["ok"], answer
        status, page = server.request("GET", "/courses/doomed")
        assert status == 200 and b"9999" not in page  # "not scheduled", not a date in 9999
        log = server.output()
    assert "Traceback" not in log and "OverflowError" not in log, log


# --- the answer size cap --------------------------------------------------------------------------

def test_an_endless_answer_fails_its_course_alone_with_memory_bounded(web, healthy, tmp_path):
    web.fault = "endless"  # every answer of this server is JSON that never ends, at loopback speed
    courses = {"endless": zenodo(web, sync_timeout=120),
               "capped": zenodo(web, max_answer_size=1024 * 1024, sync_timeout=120),
               "healthy": {"source": "local", "path": str(healthy), "schedule": 0}}
    config = write_config(tmp_path / "f2git.toml", {"data_dir": str(tmp_path / "data")}, courses)
    with ServeProcess(config) as server:
        before = rss(server.pid)
        status, answer = server.post("/api/courses/capped/refresh")
        assert answer["ok"] is False and "max_answer_size (1048576 bytes)" in answer["error"], answer
        started = time.monotonic()
        status, answer = server.post("/api/courses/endless/refresh")  # the default cap: 64 MiB
        assert answer["ok"] is False and "max_answer_size (67108864 bytes)" in answer["error"], answer
        assert time.monotonic() - started < 60  # the cap ends it, not sync_timeout
        grown = rss(server.pid) - before
        status, answer = server.post("/api/courses/healthy/refresh")
        assert status == 200 and answer["ok"], answer
    assert grown < 200 * 1024 * 1024, f"RSS grew by {grown / 2 ** 20:.0f} MiB"
    assert web.bytes_sent < 80 * 1024 * 1024 * 6  # read up to the cap (and a few retries' worth), not on


def test_max_answer_size_must_not_be_negative(make_config):
    from f2git.config import ConfigError
    with pytest.raises(ConfigError, match="max_answer_size"):
        make_config({"c": {"source": "local", "path": "/tmp", "max_answer_size": -1}})


# --- the engine's last line of defence ------------------------------------------------------------

@pytest.mark.parametrize("error", [RecursionError("maximum recursion depth exceeded"),
                                   OverflowError("date value out of range")])
def test_a_value_error_no_reader_caught_fails_its_course_with_words(memory_source, make_config, error):
    from tests.memsource import BUCKETS, Bucket, MemoryConnector

    class Hostile(MemoryConnector):
        def list(self, state):
            raise error

    BUCKETS["hostile"] = Bucket(files={"a.txt": b"a"})
    config = make_config({"hostile": {"source": "memory", "bucket": "hostile"}})
    course = config.courses["hostile"]
    from f2git import status
    from f2git.snapshot import sync_course
    result = sync_course(config, course, connector=Hostile(course.options, course="hostile"))
    assert not result.ok and "f2git cannot read" in result.error, result.error
    assert status.read(config, "hostile").last_error == result.error


@pytest.mark.parametrize("seconds", [1e20, "100000000000000000000", 2 ** 63])
def test_a_studip_timed_folder_at_the_end_of_time_is_read_clamped(seconds):
    from connectors.studip import unix_time
    moment = unix_time(seconds)
    assert moment == LATEST and schedulable(moment) is None
