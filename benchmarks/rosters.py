"""Rosters: how often f2git asks the LMS for 200 courses' members, and how soon a new enrolment counts.

- LMS roster requests per idle course-hour: N Canvas courses with `members = "lms"` (the Canvas
  fake of tests/canvasfake.py, 30 students each, real connector), the default `roster_ttl` and
  `schedule`, one simulated hour of scheduled syncs and members' clicks on a manual clock; every
  request to the enrollments API is counted. Goal: at most one cheap request per check.
- From a new enrolment to a successful click: a real server in a thread (tests/serverhelpers.py),
  a student refused, enrolled in Canvas, then clicking again (pullhook's /remote) once the last
  re-read is RECHECK_INTERVAL old; the time that click takes, and the worst case.
`python -m benchmarks rosters [--courses N] [--quick]`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import responses

import f2git.roster
from f2git.config import parse
from f2git.roster import RosterKeeper, RosterStore
from tests.canvasfake import TOKEN, FakeCanvas
from tests.rosterhelpers import StubHubAuth, as_user
from tests.serverhelpers import ManualClock, RunningServer, config_factory

from .common import median, table

STUDENTS = 30


def canvas_with_roster(mock) -> FakeCanvas:
    fake = FakeCanvas(mock)
    fake.page_size = 100  # Canvas's per_page maximum: one page for a course of 30
    fake.put("README.md", b"# course\n")
    fake.enrol("teacher", "TeacherEnrollment")
    for number in range(STUDENTS):
        fake.enrol(f"s{number:03d}")
    return fake


def idle_hour(work: Path, count: int) -> dict[str, float]:
    courses = {f"c{n:03d}": {**FakeCanvas.course_table(), "members": "lms"} for n in range(count)}
    config = parse({"server": {"data_dir": str(work / "data")}, "courses": courses}, work / "f.toml",
                   {"CANVAS_TOKEN": TOKEN})
    schedule = next(iter(config.courses.values())).schedule
    clock = ManualClock()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = canvas_with_roster(mock)

        async def hour() -> int:
            keeper = RosterKeeper(config, RosterStore(config.server.data_dir), clock=clock)
            checks = 0
            for tick in range(int(3600 // 60)):  # a minute at a time
                for course in config.courses.values():
                    if tick * 60 % schedule == 0:  # the scheduled check: its sync reads the roster when due
                        checks += 1
                        keeper.refresh_if_due(course)
                    keeper.refresh_if_due(course)  # a member's click this minute (admitted: no re-read)
                await asyncio.gather(*(task for task in keeper._running.values() if not task.done()))
                clock.advance(60)
            return checks

        checks = asyncio.run(hour())
        requests = sum("/enrollments" in r.url for r in fake.api_requests)
    return {"courses": count, "checks": checks, "requests": requests, "per_course_hour": requests / count,
            "per_check": requests / checks, "roster_ttl": next(iter(config.courses.values())).roster_ttl,
            "schedule": schedule}


def enrolment_to_click(work: Path, rounds: int) -> dict[str, float]:
    courses = {"cs101": {**FakeCanvas.course_table(), "schedule": 0, "members": "lms"}}
    auth = StubHubAuth(work / "data")
    times = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = canvas_with_roster(mock)
        make = config_factory(work, courses, {"CANVAS_TOKEN": TOKEN}, auth="jupyterhub")
        with RunningServer(make, auth=auth) as server:
            deadline = time.monotonic() + 30
            while not (work / "data" / "rosters" / "cs101.json").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            for number in range(rounds):
                name = f"late{number}"
                time.sleep(f2git.roster.RECHECK_INTERVAL)  # the previous re-read no longer holds this one back
                assert server.request("GET", "/api/courses/cs101/remote", headers=as_user(name))[0] == 403
                fake.enrol(name)
                time.sleep(f2git.roster.RECHECK_INTERVAL)
                started = time.perf_counter()
                status, _, body = server.request("GET", "/api/courses/cs101/remote", headers=as_user(name))
                times.append(time.perf_counter() - started)
                assert status == 200, json.loads(body)
    return {"median": median(times), "worst": max(times) + f2git.roster.RECHECK_INTERVAL, "rounds": rounds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rosters", description=__doc__.splitlines()[0])
    parser.add_argument("--courses", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="20 courses, one enrolment")
    args = parser.parse_args(argv)
    count, rounds = (20, 1) if args.quick else (args.courses, 3)
    os.environ["CANVAS_TOKEN"] = TOKEN  # the connectors read their secret from the environment
    logging.getLogger("f2git").setLevel(logging.WARNING)
    logging.getLogger("tornado.access").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="f2git-rosters-") as folder:
        idle = idle_hour(Path(folder) / "idle", count)
        late = enrolment_to_click(Path(folder) / "late", rounds)
    table(f"Rosters: {idle['courses']} Canvas courses, {STUDENTS} students each, members = \"lms\"", [
        ("schedule / roster_ttl", f"{idle['schedule']:g} s / {idle['roster_ttl']:g} s"),
        ("roster requests per idle course-hour", f"{idle['per_course_hour']:.2f} (goal: at most one per check)"),
        ("roster requests per scheduled check", f"{idle['per_check']:.2f}"),
        ("new enrolment -> successful click", f"{late['median'] * 1000:.0f} ms (median of {late['rounds']}, "
                                              "the click re-reads the roster)"),
        ("worst case (a re-read just before)", f"{late['worst']:.1f} s (RECHECK_INTERVAL + one read)"),
    ])


if __name__ == "__main__":
    main()
