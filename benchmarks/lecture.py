"""Lecture start: N students click at once, then fetch after a change. f2git against git
http-backend behind nginx + fcgiwrap, and against the floor: one static file of the same
bytes served by nginx.

    python -m benchmarks lecture                  # 25 MiB course; N = 50, 200, 500; 200 fetches
    python -m benchmarks.lecture --quick          # 2 MiB; N = 20, 50; 20 fetches (development)

Wire-level clients send the request body real git sent (recorded by f2git's pack cache from
a real `git clone --depth 1` and `git fetch`) and read the whole answer; real `git clone
--depth 1` herds run for N <= 200. Server CPU is the server's process tree (children it
reaped included), read from /proc before and after each herd.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tests.serveprocess import ServeProcess, descendants, free_port, rss, write_config

from .common import generate_course, percentile, table
from .load import CLIENT_ENV, MARKER, clone_herd

TICK = os.sysconf("SC_CLK_TCK")
TARGET_CPU = 5.0  # CPU per repeated clone, at most this many times the floor's
TARGET_WALL = 2.0  # wall time of the 500-client herd, at most this many times the floor's


# --- measuring a server --------------------------------------------------------------------------

def tree_cpu(roots: list[int]) -> float:
    """CPU seconds of these processes and their descendants, with children they reaped."""
    total = 0
    for pid in {*roots, *(child for root in roots for child in descendants(root))}:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        except (OSError, ValueError):
            continue
    return total / TICK


def tree_rss(roots: list[int]) -> int:
    total = 0
    for pid in {*roots, *(child for root in roots for child in descendants(root))}:
        try:
            total += rss(pid)
        except OSError:
            continue
    return total


class PeakRss:
    """Samples the tree's resident memory every 50 ms while in the `with` block."""

    def __init__(self, roots: list[int]):
        self.roots, self.peak, self._done = roots, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, tree_rss(self.roots))

    def __enter__(self) -> "PeakRss":
        self.peak = tree_rss(self.roots)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()


@dataclass
class Herd:
    server: str
    what: str
    count: int
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    cpu: float = 0.0  # server CPU seconds for the whole herd
    peak_rss: int = 0

    @property
    def cpu_per_client(self) -> float:
        return self.cpu / self.count


@dataclass
class Target:
    """Where a herd is sent: a server's process roots and the request that makes one answer."""

    name: str
    cpu: "Callable[[], float]"
    roots: list[int]
    port: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


async def _one(target: Target, expected: int) -> tuple[float, bool]:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", target.port, limit=1 << 20)
        head = [f"{target.method} {target.path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
                *(f"{name}: {value}" for name, value in target.headers.items())]
        if target.method == "POST":
            head.append(f"Content-Length: {len(target.body)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + target.body)
        status = await reader.readline()
        received = 0
        while chunk := await reader.read(1 << 20):
            received += len(chunk)
        writer.close()
        return time.perf_counter() - started, status.split()[1:2] == [b"200"] and received >= expected
    except OSError:
        return time.perf_counter() - started, False


def wire_herd(target: Target, count: int, expected: int, what: str) -> Herd:
    """`count` clients at once, each reading the whole answer (at least `expected` bytes)."""
    async def run() -> list[tuple[float, bool]]:
        return await asyncio.gather(*(_one(target, expected) for _ in range(count)))

    herd = Herd(target.name, what, count)
    cpu = target.cpu()
    with PeakRss(target.roots) as peak:
        started = time.perf_counter()
        results = asyncio.run(run())
        herd.wall = time.perf_counter() - started
    herd.cpu = target.cpu() - cpu
    herd.peak_rss = peak.peak
    herd.latencies = [latency for latency, _ in results]
    herd.failures = sum(1 for _, ok in results if not ok)
    return herd


def git_herd(name: str, server_cpu: Callable[[], float], roots: list[int], url: str, count: int,
             work: Path) -> Herd:
    cpu = server_cpu()
    with PeakRss(roots) as peak:
        result = clone_herd(url, count, count, work)
    return Herd(name, "git clone --depth 1", count, result.wall, result.latencies, len(result.failures),
                server_cpu() - cpu, peak.peak)


# --- nginx: git http-backend through fcgiwrap, and static files --------------------------------

class Nginx:
    def __init__(self, work: Path, repos: Path, static: Path, workers: int):
        self.work, self.port = work, free_port()
        work.mkdir(parents=True, exist_ok=True)
        self.socket = work / "fcgiwrap.sock"
        backend = subprocess.run(["git", "--exec-path"], capture_output=True, text=True).stdout.strip()
        # fcgiwrap reaps its children without accounting their CPU: a wrapper waits for git
        # and appends its own and git's CPU times (bash `times`) to a file.
        self.git_times = work / "git-times"
        wrapper = work / "git-http-backend"
        wrapper.write_text(f"#!/bin/bash\n{backend}/git-http-backend\nstatus=$?\n"
                           f"times >> {self.git_times}\nexit $status\n")
        wrapper.chmod(0o755)
        (work / "nginx.conf").write_text(f"""
user root;
worker_processes {os.cpu_count() or 1};
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    client_body_temp_path {work}/body;
    fastcgi_temp_path {work}/fastcgi;
    proxy_temp_path {work}/proxy;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        client_max_body_size 0;
        location /static/ {{ alias {static}/; }}
        location ~ ^/git(/.*)$ {{
            include /etc/nginx/fastcgi_params;
            fastcgi_pass unix:{self.socket};
            fastcgi_param SCRIPT_FILENAME {wrapper};
            fastcgi_param GIT_PROJECT_ROOT {repos};
            fastcgi_param GIT_HTTP_EXPORT_ALL 1;
            fastcgi_param PATH_INFO $1;
        }}
    }}
}}
""")
        self.workers = workers
        self.processes: list[subprocess.Popen] = []

    @property
    def roots(self) -> list[int]:
        return [process.pid for process in self.processes]

    def git_cpu(self) -> float:
        """CPU seconds of every git http-backend run so far (children included)."""
        total = 0.0
        if self.git_times.exists():
            for line in self.git_times.read_text().splitlines():
                for value in line.split():  # e.g. 0m0.012s
                    minutes, _, seconds = value.rstrip("s").partition("m")
                    total += 60 * float(minutes) + float(seconds)
        return total

    def __enter__(self) -> "Nginx":
        log = open(self.work / "servers.log", "wb")
        # Each in its own process group, ended as a whole: fcgiwrap's workers outlive their parent.
        self.processes.append(subprocess.Popen(["fcgiwrap", "-c", str(self.workers), "-s", f"unix:{self.socket}"],
                                               stdout=log, stderr=log, env={**CLIENT_ENV}, start_new_session=True))
        self.processes.append(subprocess.Popen(["nginx", "-c", str(self.work / "nginx.conf"), "-p", str(self.work)],
                                               stdout=log, stderr=log, start_new_session=True))
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    if self.socket.exists():
                        return self
            except OSError:
                time.sleep(0.05)  # nginx binding its port: nothing to wait on
        self.__exit__()
        raise RuntimeError(f"nginx did not start: {(self.work / 'error.log').read_text(errors='replace')}")

    def __exit__(self, *exc_info) -> None:
        for process in reversed(self.processes):
            for signum in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(process.pid, signum)
                except ProcessLookupError:
                    break
                try:
                    process.wait(20)
                    if signum == signal.SIGTERM:
                        time.sleep(0.2)  # the group's other members end after their parent
                except subprocess.TimeoutExpired:
                    continue
            try:
                os.killpg(process.pid, signal.SIGKILL)  # whatever of the group is left
            except ProcessLookupError:
                pass


# --- the run -------------------------------------------------------------------------------------

def recorded(data: Path, course: str, want: bytes) -> tuple[dict, bytes]:
    """The request (as real git sent it) and answer body of the largest stored answer whose
    request contains `want`, from f2git's pack cache."""
    best = None
    for meta in (data / "packcache" / course).rglob("*.json"):
        request = json.loads(meta.read_text())
        body = bytes.fromhex(request["body"])
        if request["method"] != "POST" or want not in body:
            continue
        stored = meta.with_suffix("").read_bytes()
        answer = stored[stored.index(b"\n") + 1:]
        answer = answer[answer.index(b"\r\n\r\n") + 4:]
        if best is None or len(answer) > len(best[1]):
            best = ({**request, "body": body}, answer)
    assert best is not None, f"no stored answer for a request with {want!r}"
    return best


def targets(request: dict, f2git: ServeProcess, nginx: Nginx, static_name: str) -> list[Target]:
    headers = {"Content-Type": request["content_type"]}
    if request["protocol"]:
        headers["Git-Protocol"] = request["protocol"]
    return [Target("f2git", f2git_cpu(f2git), [f2git.pid], f2git.port, "POST", "/git/bench/git-upload-pack", headers,
                   request["body"]),
            Target("nginx + git http-backend", nginx_cpu(nginx), nginx.roots, nginx.port, "POST",
                   "/git/bench.git/git-upload-pack", headers, request["body"]),
            Target("nginx static file (floor)", nginx_cpu(nginx), nginx.roots, nginx.port, "GET",
                   f"/static/{static_name}", {}, b"")]


def f2git_cpu(server: ServeProcess) -> Callable[[], float]:
    return lambda: tree_cpu([server.pid])  # f2git reaps its git runs: their CPU is in its cutime


def nginx_cpu(nginx: Nginx) -> Callable[[], float]:
    return lambda: tree_cpu(nginx.roots) + nginx.git_cpu()


def measure(work: Path, *, mib: int, files: int, sizes: list[int], git_max: int, fetches: int) -> list[Herd]:
    source = work / "source"
    generate_course(source, files, mib * 1024 * 1024, seed=3)
    config = write_config(work / "f2git.toml", {"data_dir": "data", "refresh_ttl": 3600},
                          {"bench": {"source": "local", "path": str(source), "schedule": 0}})
    static = work / "static"
    static.mkdir()
    clones = work / "clones"
    clones.mkdir()
    herds: list[Herd] = []
    slots = 4 * (os.cpu_count() or 1)
    with ServeProcess(config) as f2git, Nginx(work / "nginx", work / "data" / "repos", static, slots) as nginx:
        assert f2git.post("/api/courses/bench/refresh")[1]["ok"]
        student = work / "student"
        subprocess.run(["git", "clone", "-q", "--depth", "1", f2git.git_url("bench"), str(student)], check=True,
                       env=CLIENT_ENV)
        request, answer = recorded(work / "data", "bench", b"deepen 1")
        (static / "clone").write_bytes(answer)
        for count in sizes:
            for target in targets(request, f2git, nginx, "clone"):
                herds.append(wire_herd(target, count, len(answer), f"{count} clients read the clone"))
            if count <= git_max:
                herds.append(git_herd("f2git", f2git_cpu(f2git), [f2git.pid], f2git.git_url("bench"), count, clones))
                herds.append(git_herd("nginx + git http-backend", nginx_cpu(nginx), nginx.roots,
                                      f"http://127.0.0.1:{nginx.port}/git/bench.git", count, clones))
        # One change, then the fetch every student makes.
        (source / MARKER).write_text("changed for the follow-up fetch\n")
        assert f2git.post("/api/courses/bench/refresh")[1]["changed"]
        subprocess.run(["git", "fetch", "-q", "origin"], cwd=student, check=True, env=CLIENT_ENV)
        request, answer = recorded(work / "data", "bench", b"have ")
        (static / "fetch").write_bytes(answer)
        for target in targets(request, f2git, nginx, "fetch"):
            herds.append(wire_herd(target, fetches, len(answer), f"{fetches} fetches after one change"))
        assert "Traceback" not in f2git.output(), f2git.output()
    shutil.rmtree(clones, ignore_errors=True)
    return herds


def report(herds: list[Herd], *, mib: int) -> None:
    floor = {herd.what: herd for herd in herds if herd.server.startswith("nginx static")}
    rows = []
    for herd in herds:
        base = floor.get(herd.what)
        ratio = ""
        if base is not None and herd is not base and base.wall and base.cpu_per_client:
            ratio = (f"   ×{herd.wall / base.wall:.1f} wall, ×{herd.cpu_per_client / base.cpu_per_client:.1f} CPU"
                     " of the floor")
        rows.append((f"{herd.what}: {herd.server}",
                     f"wall {herd.wall:6.2f} s  p50 {percentile(herd.latencies, 0.5):6.2f} s  "
                     f"p99 {percentile(herd.latencies, 0.99):6.2f} s  failed {herd.failures:3d}  "
                     f"CPU/client {herd.cpu_per_client * 1000:6.1f} ms  peak RSS {herd.peak_rss / 2**20:5.0f} MiB"
                     + ratio))
    table(f"Lecture start: a {mib} MiB course, clients at once (127.0.0.1, {os.cpu_count()} cores)", rows)
    checks = []
    for what, base in floor.items():
        ours = next((h for h in herds if h.what == what and h.server == "f2git"), None)
        if ours is None or not base.cpu_per_client or not base.wall:
            continue
        checks.append((f"{what}: f2git CPU per client / floor (target ≤ {TARGET_CPU:g}×)",
                       f"{ours.cpu_per_client / base.cpu_per_client:.1f}×"))
        if what.startswith("500 "):
            checks.append((f"{what}: f2git wall / floor (target ≤ {TARGET_WALL:g}×)", f"{ours.wall / base.wall:.1f}×"))
    if checks:
        table("Targets (issue 14)", checks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lecture", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run to see it works")
    parser.add_argument("--mib", type=int, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        mib, sizes, fetches, git_max = args.mib or 2, [20, 50], 20, 20
    else:
        mib, sizes, fetches, git_max = args.mib or 25, [50, 200, 500], 200, 200
    with tempfile.TemporaryDirectory(prefix="f2git-lecture-") as folder:
        herds = measure(Path(folder), mib=mib, files=100, sizes=sizes, git_max=git_max, fetches=fetches)
    report(herds, mib=mib)


if __name__ == "__main__":
    main()
