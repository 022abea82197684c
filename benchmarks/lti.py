"""LTI launches: a student's launch → 303 latency at a steady rate, JWKS cached (issue 19).

    python -m benchmarks lti              # 300 launches/min for 60 s
    python -m benchmarks.lti --quick      # 300 launches/min for 15 s

f2git runs as `f2git serve` (its own process); the platform is lti1p3platform over HTTP on
127.0.0.1 (tests/ltiplatform.py). Each launch is the whole flow a browser makes (login at f2git,
the platform's /authorize, the form post to /lti/launch); the figure is the form post alone,
the part f2git answers with the 303 (verifying the id_token, the course's context, the handoff).
Then a flood of logins that never launch (they need no sign-in): f2git's memory before and
after, and whether a real launch still gets through.
"""
from __future__ import annotations

import argparse
import re
import tempfile
import threading
import time
from pathlib import Path

from tests.ltiplatform import LEARNER, Browser, LtiPlatform, Message
from tests.serveprocess import ServeProcess, free_port, rss, write_config

from .common import generate_course, median, percentile, table

GOAL_P99 = 0.050  # s
FLOOD = 10_000  # logins that never launch


def launch_once(platform: LtiPlatform, hint: str, results: list[float], errors: list[str]) -> None:
    browser = Browser()
    try:
        login = browser.login(platform, hint)
        action, fields = browser.authorize(login)
        start = time.perf_counter()
        answer = browser.session.post(action, data=fields, allow_redirects=False, timeout=30)
        took = time.perf_counter() - start
    except Exception as error:  # counted, shown below
        errors.append(repr(error))
        return
    if answer.status_code == 303:
        results.append(took)
    else:
        errors.append(f"HTTP {answer.status_code}")


def flood_logins(platform: LtiPlatform, server: ServeProcess, custom: dict) -> list[tuple[str, str]]:
    url = platform.login_initiation(platform.add(Message("flood", LEARNER, custom=custom)))
    before = rss(server.pid)
    answered: list[int] = []

    def some(count: int) -> None:
        import requests
        with requests.Session() as session:
            for _ in range(count):
                answered.append(session.get(url, allow_redirects=False, timeout=30).status_code)
                session.cookies.clear()  # a flooder keeps no cookies (a browser's would grow each request)

    start = time.monotonic()
    threads = [threading.Thread(target=some, args=(FLOOD // 8,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - start
    after = rss(server.pid)
    results: list[float] = []
    errors: list[str] = []
    launch_once(platform, platform.add(Message("after-flood", LEARNER, custom=custom)), results, errors)
    return [("logins answered 302", f"{answered.count(302)} of {len(answered)} in {took:.1f} s"),
            ("f2git's RSS before → after", f"{before / 2**20:.0f} → {after / 2**20:.0f} MiB"),
            ("a real launch after the flood", "303" if results else f"failed: {errors}")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks lti", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300.0, help="launches per minute")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="15 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 15.0
    with tempfile.TemporaryDirectory(prefix="f2git-lti-") as folder, LtiPlatform() as platform:
        work = Path(folder)
        generate_course(work / "course", files=50, total_bytes=2_000_000)
        port = free_port()
        config = write_config(work / "f2git.toml", {"data_dir": "data", "port": port, "refresh_ttl": 60}, {
            "cs101": {"source": "local", "path": str(work / "course"), "schedule": 0,
                      "lti_contexts": ["ctx-cs101"]}},
            {"hub": {"url": "https://hub.example.edu"},
             "lti": {"key_file": str(work / "lti-key.pem"), "platforms": [platform.section()]}})
        with ServeProcess(config, port=port) as server:
            platform.connect(server.url)
            server.post("/api/courses/cs101/refresh")
            custom = {"f2git_course": "cs101", "f2git_path": "", "f2git_app": "lab"}
            warm: list[float] = []
            warm_errors: list[str] = []
            launch_once(platform, platform.add(Message("warm", LEARNER, custom=custom)), warm, warm_errors)
            if not warm:  # JWKS now cached
                raise SystemExit(f"the first launch failed: {warm_errors} {server.output()[-2000:]}")
            results: list[float] = []
            errors: list[str] = []
            threads = []
            count = int(args.rate * args.seconds / 60)
            hints = [platform.add(Message(f"student-{i}", LEARNER, custom=custom)) for i in range(count)]
            begin = time.monotonic()
            for i, hint in enumerate(hints):
                delay = begin + i * 60.0 / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                thread = threading.Thread(target=launch_once, args=(platform, hint, results, errors))
                thread.start()
                threads.append(thread)
            for thread in threads:
                thread.join()
            served = [float(m) / 1000 for m in re.findall(r"303 POST /lti/launch \(\S+\) ([0-9.]+)ms", server.output())]
            flood = flood_logins(platform, server, custom)
    p99 = percentile(results, 0.99) if results else float("nan")
    table(f"LTI launch → 303 ({args.rate:g} launches/min for {args.seconds:g} s, JWKS cached, f2git serve process)", [
        ("launches answered 303", f"{len(results)} of {count} ({len(errors)} failed{': ' + errors[0] if errors else ''})"),
        ("f2git's own time (its access log)", f"p50 {1000 * median(served):.1f} ms,"
         f" p99 {1000 * percentile(served, 0.99):.1f} ms (goal p99 ≤ {1000 * GOAL_P99:.0f} ms)"),
        ("seen by the client (same process as the platform)", f"p50 {1000 * median(results):.1f} ms, p99 {1000 * p99:.1f} ms,"
                            f" max {1000 * max(results):.1f} ms"),
        ("platform key set reads", f"{platform.jwks_requests} (one for the whole run)"),
    ])
    table(f"A flood of {FLOOD} LTI logins that never launch", flood)


if __name__ == "__main__":
    main()
