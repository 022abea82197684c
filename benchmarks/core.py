"""Issue-2 figures: syncing 3000 files, cloning through f2git against file://, 50 clicks."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from f2git.config import load
from f2git.snapshot import sync_course

from .common import free_port, generate_course, median, running_server, table, timed, write_config

FILES = 3000
COURSE_BYTES = 20 * 1024 * 1024
CLICKS = 50


def bench_sync(work: Path) -> None:
    source = work / "source"
    generate_course(source, FILES, COURSE_BYTES)
    config = load(write_config(work, source, free_port()))
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


def clone(url: str, into: Path) -> float:
    seconds, _ = timed(subprocess.run, ["git", "clone", "-q", "--depth", "1", url, str(into)],
                       check=True, capture_output=True)
    shutil.rmtree(into)
    return seconds


def bench_serving(work: Path) -> None:
    source = work / "serve-source"
    generate_course(source, 200, COURSE_BYTES, seed=1)
    port = free_port()
    config_path = write_config(work, source, port, refresh_ttl=30, refresh_wait=10)
    config = load(config_path)
    assert sync_course(config, config.courses["bench"]).ok
    repo = config.repos_dir / "bench.git"
    with running_server(config_path, port):
        url = f"http://127.0.0.1:{port}/git/bench"
        clone(url, work / "warm")  # first click refreshes; measure the steady state
        through = [clone(url, work / f"c{i}") for i in range(5)]
        direct = [clone(f"file://{repo}", work / f"d{i}") for i in range(5)]
    table("Serving a 200-file, 20 MiB course", [
        ("shallow clone through f2git (median of 5)", f"{median(through):.3f} s"),
        ("git clone --depth 1 file:// same repo (median of 5)", f"{median(direct):.3f} s")])
    bench_clicks(work, config_path, port, source)


CLICK_TTL = 3.0


def bench_clicks(work: Path, config_path: Path, port: int, source: Path) -> None:
    """The herd arrives at a course whose last check is older than the TTL, right after a change."""
    config_path.write_text(config_path.read_text().replace("refresh_ttl = 30", f"refresh_ttl = {CLICK_TTL}"))
    with running_server(config_path, port):
        url = f"http://127.0.0.1:{port}/git/bench"
        subprocess.run(["git", "ls-remote", url], check=True, capture_output=True)
        time.sleep(CLICK_TTL + 0.5)  # past the TTL: the next click must refresh
        (source / "unit01" / "another.txt").write_text("released\n")
        listings_before = _listings(port)
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
        listings = _listings(port) - listings_before
    table(f"{CLICKS} simultaneous clicks (shallow clones) right after a change", [
        ("source listings (syncs) for all clicks", str(listings)),
        ("failed clicks / missed the change", str(len(failures))),
        ("wall time for all", f"{wall:.2f} s"),
        ("median click", f"{median(latencies):.2f} s"),
    ])


def _listings(port: int) -> int:
    """Successful and failed syncs recorded in the course status history."""
    import json
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/courses/bench", timeout=10) as answer:
        return len(json.load(answer).get("history", []))


def main(argv: list[str] | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="f2git-bench-") as folder:
        work = Path(folder)
        bench_sync(work / "sync")
        (work / "serve").mkdir()
        bench_serving(work / "serve")
