"""Many courses, one server: start-up, idle CPU and click latency during scheduled checks.

A real `f2git serve` (tests/serveprocess.py) with N local courses, each synced once before.
- start-up: process start until /healthz answers, then the first click (`git ls-remote`);
- clicks during scheduled checks: every course was last checked an hour ago (as after a night
  of downtime), so all scheduled checks are due at start; clicks on one course (refresh_ttl 0,
  so each click refreshes) meanwhile;
- idle CPU: the server's CPU (git children included) over a window in which no check is due,
  N courses beside one course.
`python -m benchmarks courses [--courses N] [--idle S] [--quick]`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import tornado.netutil

from f2git.config import ServerConfig, load
from f2git.snapshot import sync_course
from tests.serveprocess import ServeProcess, write_config

from .common import median, percentile, table, timed

# Measured on 2 cores before this change (issue 14.7), 200 courses.
BEFORE = {"start": "1.65 s of git rev-parse at start (600 runs)", "first_click": "3.3 s",
          "clicks": "2.6-4.4 s", "idle": "160x one course"}
TICKS = os.sysconf("SC_CLK_TCK")


def make_courses(work: Path, count: int, schedule: float) -> Path:
    courses = {}
    for n in range(count):
        folder = work / "sources" / f"c{n:03d}"
        (folder / "week1").mkdir(parents=True)
        (folder / "README.md").write_text(f"# course {n}\n")
        (folder / "week1" / "intro.ipynb").write_text('{"cells": []}\n')
        courses[f"c{n:03d}"] = {"source": "local", "path": str(folder), "schedule": schedule}
    server = {"data_dir": "data", "refresh_ttl": 0}
    if "click_window" in ServerConfig.__dataclass_fields__:  # (absent before; lets this file measure the old code)
        server["click_window"] = 0  # every ls-remote below is a click of its own (one address clicks them all)
    config_path = write_config(work / "f2git.toml", server, courses)
    config = load(config_path)
    for course in config.courses.values():
        assert sync_course(config, course).ok
    return config_path


def checked_long_ago(config_path: Path, seconds: float) -> None:
    """Move every course's last check back, as if the server had been down for `seconds`."""
    for path in (config_path.parent / "data" / "status").glob("*.json"):
        record = json.loads(path.read_text())
        record["last_check"] = record["last_success"] = record["last_check"] - seconds
        path.write_text(json.dumps(record))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / TICKS  # utime stime cutime cstime


def click(server: ServeProcess, course: str) -> float:
    seconds, done = timed(subprocess.run, ["git", "ls-remote", server.git_url(course), "refs/heads/main"],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return seconds


def start_and_click(config_path: Path, clicks: int) -> dict:
    server = ServeProcess(config_path)
    started, _ = timed(server.start)
    try:
        figures = {"start": started, "first_click": click(server, "c000")}
        figures["clicks"] = [click(server, f"c{n % 7:03d}") for n in range(clicks)]
    finally:
        server.stop()
    return figures


def server_start(config_path: Path) -> float:
    """Seconds from a loaded config to a listening server with its schedule (no interpreter start)."""
    from f2git.server.app import Server

    config = load(config_path)

    async def run() -> float:
        started = time.perf_counter()
        server = Server(config)
        await server.start(tornado.netutil.bind_sockets(0, "127.0.0.1"))
        took = time.perf_counter() - started
        await server.stop()
        return took

    return asyncio.run(run())


def idle_cpu(config_path: Path, seconds: float) -> float:
    """CPU seconds per minute of a started server in which nothing is due."""
    with ServeProcess(config_path) as server:
        time.sleep(min(3.0, seconds))  # let start-up work (heads loading) finish
        before = cpu_seconds(server.pid)
        time.sleep(seconds)
        return (cpu_seconds(server.pid) - before) * 60 / seconds


def ratio(many: float, one: float) -> str:
    resolution = 60 / TICKS  # one clock tick, per minute of a 60 s window
    if one <= 0:
        return "one course below the clock's resolution" if many <= resolution else "one course: 0"
    return f"{many / one:.1f}x"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks courses", description=__doc__.splitlines()[0])
    parser.add_argument("--courses", type=int, default=200)
    parser.add_argument("--clicks", type=int, default=20, help="clicks during the scheduled checks")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU measured")
    parser.add_argument("--quick", action="store_true", help="40 courses, 5 s idle")
    args = parser.parse_args(argv)
    if args.quick:
        args.courses, args.idle, args.clicks = 40, 5.0, 10
    with tempfile.TemporaryDirectory(prefix="f2git-courses-") as folder:
        many, one = Path(folder) / "many", Path(folder) / "one"
        many.mkdir()
        one.mkdir()
        config_path = make_courses(many, args.courses, schedule=600)
        single_path = make_courses(one, 1, schedule=600)
        idle_many, idle_one = idle_cpu(config_path, args.idle), idle_cpu(single_path, args.idle)
        in_process = server_start(config_path)
        checked_long_ago(config_path, 3600)
        figures = start_and_click(config_path, args.clicks)
    clicks = figures["clicks"]
    table(f"Many courses, one server ({args.courses} local courses, schedule 600 s, all due at start)", [
        ("server start (config loaded to listening)", f"{in_process:.3f} s (before: {BEFORE['start']})"),
        ("process start until /healthz answers", f"{figures['start']:.2f} s (Python and imports included)"),
        ("first click right after", f"{figures['first_click']:.3f} s (before: {BEFORE['first_click']})"),
        (f"{len(clicks)} clicks during the scheduled checks",
         f"p50 {median(clicks):.3f} s, p90 {percentile(clicks, 0.9):.3f} s, max {max(clicks):.3f} s"
         f" (before: {BEFORE['clicks']})"),
        ("idle CPU", f"{1000 * idle_many:.0f} ms/min, one course {1000 * idle_one:.0f} ms/min"
                     f" ({ratio(idle_many, idle_one)}; before: {BEFORE['idle']})"),
    ])


if __name__ == "__main__":
    main()
