"""Under attack: a normal student's `git clone --depth 1` while f2git is attacked, next to the
same clones without the attack (issue 9).

    python -m benchmarks attack             # 20 clones per case
    python -m benchmarks.attack --quick     # 5 clones per case

(a) more stalled clients than git slots: half-sent request bodies, and clients that ask for
    the pack and never read it;
(b) 1000 half-open connections (request headers never finished);
(c) four courses whose HTTP source sends 1 byte per second, clicked while the student clones
    (the student's course has refresh_ttl = 0: each click asks its source, which needs a
    sync worker);
(d), (e) distinct 2 MiB ls-refs bodies against pack_cache_size = 1 MiB: RSS, disk, learnt
    templates and /healthz latency, beside the figures before issue 18 (cacheflood.py).
Everything on loopback (the attackers from 127.0.0.2, the student from 127.0.0.1); each attack
ends with its case.

With `auth = "token"`, attacker and students on one address (127.0.0.1, as behind a hub's proxy
or a NAT), server RSS before and during each attack (issue 18):
(d) one token holds 1000 requests, each body one byte short of 2 MiB;
(e) one token holds 1000 requests with complete headers and trickling bodies.
"""
from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.heldrequests import MIB, git_env, hold_requests, release, still_open
from tests.serveprocess import ServeProcess, rss, write_config

from . import cacheflood
from .common import generate_course, percentile, table
from .load import CLIENT_ENV, MARKER

COURSE = "course"
TRICKLING = 4
HELD = 1000
ATTACKER, STUDENT = "attacker-token", "student-token"
# Measured with the code before budgets per identity (main at 566bd4f, 2 cores, --quick), for comparison.
BEFORE = {"(d)": "before budgets: RSS 38 -> 2239 MiB, 1000 held, clones failed 5 of 5 (503)",
          "(e)": "before budgets: 1000 held, clones failed 5 of 5 (503)"}


class Trickle(BaseHTTPRequestHandler):
    """An HTTP source that promises a megabyte and sends one byte per second."""

    protocol_version = "HTTP/1.1"
    server: "TrickleServer"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(1024 * 1024))
        self.end_headers()
        while not self.server.stopping.wait(1.0):
            try:
                self.wfile.write(b"x")
                self.wfile.flush()
            except OSError:
                return


class TrickleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Trickle)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}.bin"

    def __enter__(self) -> "TrickleServer":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()


@dataclass
class Case:
    name: str
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    note: str = ""


def clones(server: ServeProcess, count: int, work: Path, name: str, env: dict[str, str] = CLIENT_ENV) -> Case:
    """`count` clones by one student, one after another."""
    case = Case(name)
    for i in range(count):
        target = work / f"{name[:1]}{i}"
        started = time.perf_counter()
        try:
            done = subprocess.run(["git", "clone", "-q", "--depth", "1", server.git_url(COURSE), str(target)],
                                  capture_output=True, text=True, env=env, timeout=300)
            problem = None if done.returncode == 0 and (target / MARKER).is_file() else \
                (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        except subprocess.TimeoutExpired:
            problem = "timed out after 300 s"
        case.latencies.append(time.perf_counter() - started)
        if problem:
            case.failures.append(problem)
        subprocess.run(["rm", "-rf", str(target)])
    return case


def connect(port: int, data: bytes, receive_buffer: int = 0, source: str = "127.0.0.2") -> socket.socket | None:
    """An attacker's connection: from another address than the student's (127.0.0.1)."""
    connection = socket.socket()
    if receive_buffer:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    try:
        connection.settimeout(5)
        connection.bind((source, 0))
        connection.connect(("127.0.0.1", port))
        connection.sendall(data)
        return connection
    except OSError:
        connection.close()
        return None


def stalled_clients(server: ServeProcess, slots: int, head: str) -> list[socket.socket]:
    """Twice as many stalled clients as slots: half-sent bodies, and pack requests never read."""
    post = (f"POST /git/{COURSE}/git-upload-pack HTTP/1.1\r\nHost: x\r\nGit-Protocol: version=2\r\n"
            "Content-Type: application/x-git-upload-pack-request\r\n")
    opened = [connect(server.port, (post + "Content-Length: 1000\r\n\r\n0032want ").encode()) for _ in range(slots)]
    for number in range(slots):
        # Each a different request (a different depth), so each is its own git run.
        lines = ["command=fetch\n", "0001", "no-progress\n", f"deepen {number + 1}\n", f"want {head}\n", "done\n"]
        body = b"".join(line.encode() if line == "0001" else b"%04x" % (len(line) + 4) + line.encode()
                        for line in lines) + b"0000"
        opened.append(connect(server.port, (post + f"Content-Length: {len(body)}\r\n\r\n").encode() + body,
                              receive_buffer=4096))
    return [connection for connection in opened if connection is not None]


def half_open(server: ServeProcess, count: int) -> list[socket.socket]:
    opened = [connect(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n") for _ in range(count)]
    return [connection for connection in opened if connection is not None]


def click_quietly(url: str, stop: threading.Event) -> None:
    while not stop.is_set():
        subprocess.run(["git", "ls-remote", url], capture_output=True, env=CLIENT_ENV, timeout=600)


def measure(work: Path, count: int, mib: int) -> list[Case]:
    source = work / "source"
    generate_course(source, 50, mib * 1024 * 1024, seed=5)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process holds 1000 connections
    cases = []
    with TrickleServer() as trickle:
        courses = {COURSE: {"source": "local", "path": str(source), "schedule": 0}}
        courses.update({f"slow{n}": {"source": "http", "url": trickle.url(f"slow{n}"), "schedule": 0}
                        for n in range(TRICKLING)})
        config = write_config(work / "f2git.toml", {"data_dir": "data", "refresh_ttl": 0, "refresh_wait": 10},
                              courses)
        with ServeProcess(config) as server:
            assert server.post(f"/api/courses/{COURSE}/refresh")[1]["ok"]
            head = subprocess.run(["git", "ls-remote", server.git_url(COURSE), "refs/heads/main"], check=True,
                                  capture_output=True, text=True, env=CLIENT_ENV).stdout.split()[0]
            cases.append(clones(server, count, work, "no attack"))
            slots = 4 * (os.cpu_count() or 1)
            attackers = stalled_clients(server, slots, head)
            cases.append(clones(server, count, work, f"(a) {len(attackers)} stalled clients, {slots} git slots"))
            for connection in attackers:
                connection.close()
            attackers = half_open(server, 1000)
            cases.append(clones(server, count, work, f"(b) {len(attackers)} half-open connections"))
            for connection in attackers:
                connection.close()
            stop = threading.Event()
            clickers = [threading.Thread(target=click_quietly, args=(server.git_url(f"slow{n}"), stop), daemon=True)
                        for n in range(TRICKLING)]
            for thread in clickers:
                thread.start()
            time.sleep(2)  # the four syncs are under way
            cases.append(clones(server, count, work, f"(c) {TRICKLING} sources trickling 1 byte/s"))
            stop.set()
        cases += held_requests(work, source, count)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return cases


def held_requests(work: Path, source: Path, count: int) -> list[Case]:
    """(d) and (e): one token's held requests, the student's clones from the same address."""
    config = write_config(work / "tokens.toml", {"data_dir": "data-tokens", "auth": "token",
                                                 "tokens_env": "BENCH_TOKENS"},
                          {COURSE: {"source": "local", "path": str(source), "schedule": 0}})
    cases = []
    env = git_env(STUDENT, CLIENT_ENV)
    with ServeProcess(config, env={"BENCH_TOKENS": f"{ATTACKER},{STUDENT}"}) as server:
        subprocess.run(["git", "ls-remote", server.git_url(COURSE)], check=True, capture_output=True, env=env)
        for name, body, sent in ((f"(d) one token: {HELD} bodies of 2 MiB - 1 byte", 2 * MIB, 2 * MIB - 1),
                                 (f"(e) one token: {HELD} trickling bodies, same address", 1000, 10)):
            before = rss(server.pid)
            held = hold_requests(server.port, ATTACKER, HELD, course=COURSE, body=body, sent=sent)
            time.sleep(1)  # the server reads what was sent
            during = rss(server.pid)
            case = clones(server, count, work, name, env)
            during = max(during, rss(server.pid))
            case.note = (f"server RSS {before / MIB:.0f} -> {during / MIB:.0f} MiB, {still_open(held)} of {HELD} held;"
                         f" {BEFORE[name[:3]]}")
            cases.append(case)
            release(held)
            time.sleep(1)
    return cases


def report(cases: list[Case], count: int, mib: int) -> None:
    base = cases[0]
    rows = []
    for case in cases:
        p50, p99 = percentile(case.latencies, 0.5), percentile(case.latencies, 0.99)
        ratio = "" if case is base else (f"   ×{p50 / percentile(base.latencies, 0.5):.1f} p50 of no attack")
        rows.append((case.name, f"clone p50 {p50:6.2f} s  p99 {p99:6.2f} s  failed {len(case.failures)} of {count}"
                     + ratio + (f"  ({case.note})" if case.note else "")))
    table(f"Under attack: one student's git clone --depth 1 of a {mib} MiB course (127.0.0.1, "
          f"{os.cpu_count()} cores)", rows)
    failures = [f"{case.name}: {failure}" for case in cases for failure in case.failures]
    if failures:
        print("\nFailures:\n  " + "\n  ".join(failures[:10]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.attack", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 clones per case")
    args = parser.parse_args(argv)
    count, mib = (5, 2) if args.quick else (20, 10)
    with tempfile.TemporaryDirectory(prefix="f2git-attack-") as folder:
        cases = measure(Path(folder), count, mib)
    report(cases, count, mib)
    cacheflood.main(["--quick"] if args.quick else [])  # (d), (e): what the pack cache keeps under a flood


if __name__ == "__main__":
    main()
