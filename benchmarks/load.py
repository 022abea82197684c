"""Load figures: a herd of shallow clones and `git ls-remote` clicks against a real
`f2git serve` on 127.0.0.1, repeated in rounds to show that nothing leaks (git processes,
file descriptors, memory), and clone time through f2git against `git http-backend` alone.

    python -m benchmarks load            # 200 clones, 1000 clicks of a 20 MiB course, 3 rounds
    python -m benchmarks.load --clones 20 --clicks 100 --mib 2 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tests.gitcgi import GitCgiServer
from tests.serveprocess import ServeProcess, descendants, open_fds, rss, write_config

from .common import generate_course, median, percentile, table

# Clients must not read this machine's git config, nor ever prompt.
CLIENT_ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}
MARKER = "unit00/part0/file00000.txt"  # a file every clone must contain


@dataclass
class Herd:
    """One burst of identical client commands."""

    what: str
    count: int
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.count / self.wall if self.wall else 0.0


def herd(what: str, count: int, concurrency: int, command: Callable[[int], list[str]],
         check: Callable[[int, subprocess.CompletedProcess], str | None]) -> Herd:
    """Run `command(i)` for i < count, at most `concurrency` at once; `check` names a failure."""
    result = Herd(what, count)
    lock = threading.Lock()

    def one(i: int) -> None:
        started = time.perf_counter()
        try:
            done = subprocess.run(command(i), capture_output=True, text=True, env=CLIENT_ENV, timeout=600)
            problem = (done.stderr.strip().splitlines() or ["exit status %d" % done.returncode])[-1] \
                if done.returncode else check(i, done)
        except subprocess.TimeoutExpired:
            problem = "timed out after 600 s"
        with lock:
            result.latencies.append(time.perf_counter() - started)
            if problem:
                result.failures.append(f"{what} {i}: {problem}")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(count)))
    result.wall = time.perf_counter() - started
    return result


def clone_herd(url: str, count: int, concurrency: int, work: Path) -> Herd:
    def check(i: int, done) -> str | None:
        target = work / f"clone{i}"
        complete = (target / MARKER).is_file()
        shutil.rmtree(target, ignore_errors=True)  # 200 copies of the course would fill the disk
        return None if complete else "the clone lacks course files"

    return herd("clone", count, concurrency,
                lambda i: ["git", "clone", "-q", "--depth", "1", url, str(work / f"clone{i}")], check)


def click_herd(url: str, count: int, concurrency: int) -> Herd:
    return herd("ls-remote", count, concurrency, lambda i: ["git", "ls-remote", url],
                lambda i, done: None if "refs/heads/main" in done.stdout else "main not advertised")


def settle(pid: int, timeout: float = 30) -> list[int]:
    """The server's child processes still alive after `timeout` (none once requests are done)."""
    deadline = time.monotonic() + timeout
    while (children := descendants(pid)) and time.monotonic() < deadline:
        time.sleep(0.1)  # reaped asynchronously by the server; nothing to wait on from outside
    return children


def steady_fds(pid: int, baseline: int, timeout: float = 5) -> int:
    """The server's open fds once it is idle: closing finished connections and the pack cache's
    building after a round take a moment, a leak stays (polled; nothing to wait on from outside)."""
    deadline = time.monotonic() + timeout
    while (count := open_fds(pid)) > baseline + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    return count


# --- git http-backend alone, as the baseline --------------------------------------------------------

# --- the run --------------------------------------------------------------------------------------

@dataclass
class Figures:
    clones: list[Herd] = field(default_factory=list)
    clicks: list[Herd] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)  # after the first sync, then after each round
    fds: list[int] = field(default_factory=list)
    leftover_processes: list[int] = field(default_factory=list)  # after each round
    clone_f2git: float = 0.0  # median s of sequential shallow clones
    clone_backend: float = 0.0
    click_f2git: float = 0.0
    click_backend: float = 0.0

    @property
    def failures(self) -> list[str]:
        return [failure for herd in self.clones + self.clicks for failure in herd.failures]


def measure(work: Path, *, mib: int = 20, files: int = 200, clones: int = 200, clicks: int = 1000,
            rounds: int = 3, concurrency: int = 50, sequential: int = 10, refresh_ttl: float = 30) -> Figures:
    work.mkdir(parents=True, exist_ok=True)
    source = work / "source"
    generate_course(source, files, mib * 1024 * 1024, seed=7)
    config_path = write_config(work / "f2git.toml", {"data_dir": "data", "refresh_ttl": refresh_ttl, "refresh_wait": 10},
                               {"bench": {"source": "local", "path": str(source), "schedule": 0}})
    clones_dir = work / "clones"
    clones_dir.mkdir()
    figures = Figures()
    with ServeProcess(config_path) as server:
        status, answer = server.post("/api/courses/bench/refresh")
        assert status == 200 and answer["ok"], answer
        url = server.git_url("bench")
        click_herd(url, 5, 1)  # warm: imports, first requests
        settle(server.pid)
        figures.rss.append(rss(server.pid))
        figures.fds.append(open_fds(server.pid))
        for _ in range(rounds):
            figures.clones.append(clone_herd(url, clones, concurrency, clones_dir))
            figures.clicks.append(click_herd(url, clicks, concurrency))
            figures.leftover_processes.append(len(settle(server.pid)))
            figures.rss.append(rss(server.pid))
            figures.fds.append(steady_fds(server.pid, figures.fds[0]))
        figures.clone_f2git = median(clone_herd(url, sequential, 1, clones_dir).latencies)
        figures.click_f2git = median(click_herd(url, sequential * 2, 1).latencies)
        assert "Traceback" not in server.output(), server.output()
    with GitCgiServer(work / "data" / "repos") as bare:
        backend = clone_herd(bare.url("bench"), sequential, 1, clones_dir)
        assert not backend.failures, backend.failures
        figures.clone_backend = median(backend.latencies)
        figures.click_backend = median(click_herd(bare.url("bench"), sequential * 2, 1).latencies)
    return figures


# --- faults under load -------------------------------------------------------------------------------

@dataclass
class SourceFault:
    fault: str
    clicks: Herd
    source_requests: int  # requests the herd caused at the broken source (retries included)
    syncs: int  # syncs finished during the herd


TTL, WAIT = 5, 2  # s: refresh_ttl and refresh_wait of the course whose source breaks


def clicks_while_the_source_fails(work: Path, fault: str, clicks: int, concurrency: int) -> SourceFault:
    """A herd clicks a course whose source breaks (500s or hangs) after a first good snapshot.
    Every click must still get the last snapshot, within refresh_wait, and the source must be
    asked once per refresh_ttl, not once per click."""
    from tests.httpserver import FileServer
    from tests.archivefiles import zip_bytes

    with FileServer() as source:
        source.put("/course.zip", zip_bytes({MARKER: b"the last good snapshot\n"}))
        config_path = write_config(work / f"{fault}.toml",
                                   {"data_dir": f"data-{fault}", "refresh_ttl": TTL, "refresh_wait": WAIT},
                                   {"web": {"source": "http", "url": source.url("/course.zip"), "schedule": 0}})
        with ServeProcess(config_path) as server:
            assert server.post("/api/courses/web/refresh")[1]["ok"]
            source.fault = fault
            time.sleep(TTL + 0.5)  # the snapshot is now stale: the herd's first click refreshes
            before = len(source.requests), _attempts(server)
            herd_result = click_herd(server.git_url("web"), clicks, concurrency)
            requests, attempts = len(source.requests) - before[0], _attempts(server) - before[1]
            source.fault = None
            source.released.set()  # let hanging answers end, so the server's sync can finish
            settle(server.pid)
            return SourceFault(fault, herd_result, requests, attempts)


def _attempts(server: ServeProcess) -> int:
    """Syncs the server ran for the course (finished ones, from its status history)."""
    status, body = server.request("GET", "/api/courses/web")
    return len(json.loads(body)["history"])


@dataclass
class KillRecovery:
    kills: int = 0
    clean: int = 0  # fsck-clean, and main the previous or the next complete snapshot
    restart: list[float] = field(default_factory=list)  # s from start to the first answer
    recovery_sync: list[float] = field(default_factory=list)  # s of the first sync after the restart


def kill_during_syncs(work: Path, attempts: int, files: int, mib: int) -> KillRecovery:
    """kill -9 of f2git serve at spread moments of a sync that rewrites every file."""
    from f2git.config import load
    from f2git.store import CourseRepo

    source = work / "kill-source"
    config_path = write_config(work / "kill.toml", {"data_dir": "kill-data", "refresh_ttl": 0},
                               {"big": {"source": "local", "path": str(source), "schedule": 0}})
    repo = CourseRepo.for_course(load(config_path), "big")
    generate_course(source, files, mib * 1024 * 1024, seed=0)
    with ServeProcess(config_path) as server:
        started = time.perf_counter()
        assert server.post("/api/courses/big/refresh")[1]["ok"]
        duration = time.perf_counter() - started
    figures = KillRecovery()
    for attempt in range(attempts):
        before = repo.head()
        generate_course(source, files, mib * 1024 * 1024, seed=attempt + 1)
        server = ServeProcess(config_path).start()
        threading.Thread(target=_ask_quietly, args=(server, "/api/courses/big/refresh"), daemon=True).start()
        time.sleep(duration * (attempt + 0.5) / attempts)  # spread the kills over one sync
        if server.process.poll() is None:
            server.kill()
            figures.kills += 1
        server.stop()
        served = repo.head()
        fsck = subprocess.run(["git", "--git-dir", str(repo.path), "fsck", "--strict", "--no-dangling"],
                              capture_output=True)
        started = time.perf_counter()
        with ServeProcess(config_path) as again:
            figures.restart.append(time.perf_counter() - started)
            started = time.perf_counter()
            result = again.post("/api/courses/big/refresh")[1]
            figures.recovery_sync.append(time.perf_counter() - started)
        # Served after the kill: the previous snapshot, or the new one the recovery then found complete.
        if fsck.returncode == 0 and result["ok"] and served in (before, result["commit"]):
            figures.clean += 1
    return figures


def _ask_quietly(server: ServeProcess, path: str) -> None:
    try:
        server.request("POST", path, b"{}", timeout=60)
    except OSError:  # killed mid-answer: that is the point
        pass


def report(figures: Figures, *, mib: int, files: int, concurrency: int) -> None:
    mb = 1024 * 1024
    clones, clicks = figures.clones, figures.clicks
    all_clicks = [latency for herd in clicks for latency in herd.latencies]
    rows = [
        ("failed requests (clones + clicks, all rounds)", str(len(figures.failures))),
        (f"clones per round ({concurrency} at a time)", f"{clones[0].count}"),
        ("clones per second, by round", ", ".join(f"{h.per_second:.1f}" for h in clones)),
        ("clone latency p50 / p99 (s)", f"{percentile([l for h in clones for l in h.latencies], 0.5):.2f} / "
                                        f"{percentile([l for h in clones for l in h.latencies], 0.99):.2f}"),
        (f"ls-remote clicks per round ({concurrency} at a time)", f"{clicks[0].count}"),
        ("click latency p50 / p99 (ms)", f"{percentile(all_clicks, 0.5) * 1000:.0f} / "
                                         f"{percentile(all_clicks, 0.99) * 1000:.0f}"),
        ("clicks per second, by round", ", ".join(f"{h.per_second:.0f}" for h in clicks)),
        ("server RSS before, after each round (MiB)", " → ".join(f"{value / mb:.0f}" for value in figures.rss)),
        ("server open fds before, after each round", " → ".join(str(value) for value in figures.fds)),
        ("git processes left after each round", ", ".join(str(n) for n in figures.leftover_processes)),
    ]
    table(f"Load: a {mib} MiB, {files}-file course on f2git serve (127.0.0.1, {os.cpu_count()} cores),"
          f" {len(clones)} rounds", rows)
    overhead = figures.clone_f2git - figures.clone_backend
    table("One shallow clone at a time: f2git vs git http-backend alone (CGI), same repo", [
        ("clone through f2git (median)", f"{figures.clone_f2git:.3f} s"),
        ("clone through git http-backend alone (median)", f"{figures.clone_backend:.3f} s"),
        ("f2git overhead per clone", f"{overhead * 1000:+.0f} ms ({overhead / figures.clone_backend:+.0%})"),
        ("ls-remote through f2git / backend alone (median)",
         f"{figures.click_f2git * 1000:.0f} ms / {figures.click_backend * 1000:.0f} ms"),
    ])
    if figures.failures:
        print("\nFailures:\n  " + "\n  ".join(figures.failures[:20]))


def report_faults(source_faults: list[SourceFault], kills: KillRecovery, *, files: int, mib: int) -> None:
    rows = []
    for item in source_faults:
        latencies = item.clicks.latencies
        rows += [(f"source {item.fault}: failed clicks of {item.clicks.count}", str(len(item.clicks.failures))),
                 (f"source {item.fault}: click p50 / p99 (refresh_wait {WAIT} s)",
                  f"{percentile(latencies, 0.5):.2f} / {percentile(latencies, 0.99):.2f} s"),
                 (f"source {item.fault}: syncs / source requests in {item.clicks.wall:.0f} s (refresh_ttl {TTL} s)",
                  f"{item.syncs} / {item.source_requests}")]
    rows += [(f"kill -9 of f2git serve during a {files}-file, {mib} MiB sync", f"{kills.kills} kills"),
             ("  fsck-clean, previous or next snapshot, next sync ok", f"{kills.clean} of {len(kills.restart)}"),
             ("  restart to first answer (median)", f"{median(kills.restart):.2f} s"),
             ("  first sync after restart (median)", f"{median(kills.recovery_sync):.2f} s")]
    table("Faults: a broken source under a click herd, and a crashed server", rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=20, help="course size (default 20)")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--clones", type=int, default=200, help="shallow clones per round (default 200)")
    parser.add_argument("--clicks", type=int, default=1000, help="ls-remote clicks per round (default 1000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=50, help="clients at once (default 50)")
    parser.add_argument("--kills", type=int, default=5, help="kill -9 moments of the server (default 5)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="f2git-load-") as folder:
        work = Path(folder)
        figures = measure(work / "load", mib=args.mib, files=args.files, clones=args.clones, clicks=args.clicks,
                          rounds=args.rounds, concurrency=args.concurrency)
        report(figures, mib=args.mib, files=args.files, concurrency=args.concurrency)
        (work / "faults").mkdir()
        source_faults = [clicks_while_the_source_fails(work / "faults", fault, args.clicks // 5, args.concurrency)
                         for fault in ("error", "hang")]
        kills = kill_during_syncs(work / "faults", args.kills, files=2000, mib=args.mib)
        report_faults(source_faults, kills, files=2000, mib=args.mib)


if __name__ == "__main__":
    main()
