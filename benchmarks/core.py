"""Issue-2 figures: syncing 3000 files, cloning through f2git against file://, 50 clicks."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from f2git.config import load
from f2git.snapshot import sync_course

from tests.serveprocess import ServeProcess, write_config

from .common import generate_course, median, table, timed

FILES = 3000
SERVER = {"data_dir": "data", "refresh_ttl": 30, "refresh_wait": 10}
COURSE_BYTES = 20 * 1024 * 1024
CLICKS = 50


def bench_sync(work: Path) -> None:
    source = work / "source"
    generate_course(source, FILES, COURSE_BYTES)
    config = load(bench_config(work, source))
    course = config.courses["bench"]
    first, result = timed(sync_course, config, course)
    assert result.ok, result.error
    again, unchanged = timed(sync_course, config, course)
    target = next(source.rglob("*.txt"))
    target.write_bytes(target.read_bytes() + b"\nedited\n")
    one, edited = timed(sync_course, config, course)
    assert edited.modified == 1, edited
    table(f"Sync of a generated course ({FILES} files, {COURSE_BYTES >> 20} MiB, local source)", [
        ("first sync", f"{first:.2f} s"),
        ("re-sync, nothing changed", f"{again:.3f} s ({'no commit' if not unchanged.changed else 'COMMITTED'})"),
        ("re-sync, one file changed", f"{one:.3f} s ({edited.modified} modified)"),
    ])


def bench_config(work: Path, source: Path, **server: object) -> Path:
    """One local course, `bench`, that only syncs when asked (schedule 0)."""
    return write_config(work / "f2git.toml", {**SERVER, **server},
                        {"bench": {"source": "local", "path": str(source), "schedule": 0}})


def clone(url: str, into: Path) -> float:
    seconds, _ = timed(subprocess.run, ["git", "clone", "-q", "--depth", "1", url, str(into)],
                       check=True, capture_output=True)
    shutil.rmtree(into)
    return seconds


def bench_serving(work: Path) -> None:
    source = work / "serve-source"
    generate_course(source, 200, COURSE_BYTES, seed=1)
    config_path = bench_config(work, source)
    config = load(config_path)
    assert sync_course(config, config.courses["bench"]).ok
    repo = config.repos_dir / "bench.git"
    with ServeProcess(config_path) as server:
        url = server.git_url("bench")
        clone(url, work / "warm")  # first click refreshes; measure the steady state
        through = [clone(url, work / f"c{i}") for i in range(5)]
        direct = [clone(f"file://{repo}", work / f"d{i}") for i in range(5)]
    table("Serving a 200-file, 20 MiB course", [
        ("shallow clone through f2git (median of 5)", f"{median(through):.3f} s"),
        ("git clone --depth 1 file:// same repo (median of 5)", f"{median(direct):.3f} s")])
    bench_clicks(work, source)


CLICK_TTL = 3.0


def bench_clicks(work: Path, source: Path) -> None:
    """The herd arrives at a course whose last check is older than the TTL, right after a change."""
    with ServeProcess(bench_config(work, source, refresh_ttl=CLICK_TTL)) as server:
        url = server.git_url("bench")
        subprocess.run(["git", "ls-remote", url], check=True, capture_output=True)
        time.sleep(CLICK_TTL + 0.5)  # past the TTL: the next click must refresh
        (source / "unit01" / "another.txt").write_text("released\n")
        listings_before = _listings(server)
        failures, latencies = [], []
        barrier = threading.Barrier(CLICKS)

        def click(i: int) -> None:
            barrier.wait()
            started = time.perf_counter()
            try:
                clone_dir = work / f"click{i}"
                subprocess.run(["git", "clone", "-q", "--depth", "1", url, str(clone_dir)], check=True,
                               capture_output=True, timeout=120)
                if not (clone_dir / "unit01" / "another.txt").exists():
                    failures.append(f"click {i} missed the change")
                shutil.rmtree(clone_dir)
            except subprocess.SubprocessError as error:
                failures.append(str(error))
            latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        threads = [threading.Thread(target=click, args=(i,)) for i in range(CLICKS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        listings = _listings(server) - listings_before
    table(f"{CLICKS} simultaneous clicks (shallow clones) right after a change", [
        ("source listings (syncs) for all clicks", str(listings)),
        ("failed clicks / missed the change", str(len(failures))),
        ("wall time for all", f"{wall:.2f} s"),
        ("median click", f"{median(latencies):.2f} s"),
    ])


def _listings(server: ServeProcess) -> int:
    """Successful and failed syncs recorded in the course status history."""
    _, body = server.request("GET", "/api/courses/bench")
    return len(json.loads(body).get("history", []))


def main(argv: list[str] | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="f2git-bench-") as folder:
        work = Path(folder)
        bench_sync(work / "sync")
        (work / "serve").mkdir()
        bench_serving(work / "serve")
