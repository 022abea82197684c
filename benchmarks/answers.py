"""Hostile LMS answers against a running `f2git serve` (issue 18 items 2, 4, 11): RSS before and
after, how long the course takes to fail, and whether a healthy course still syncs.

    python -m benchmarks answers

(a) a Zenodo listing that never ends (chunked JSON at loopback speed), default max_answer_size;
(b) the same with max_answer_size = 1 MiB;
(c) JSON nested 100 000 levels deep;
(d) an embargo until 9999-12-31T23:59:59-01:00 (the end of time, past datetime's range).
"""
from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

from tests.httpserver import FileServer
from tests.serveprocess import ServeProcess, rss, write_config

from .common import table

MIB = 1024 * 1024


def zenodo(web: FileServer, **keys) -> dict:
    return {"source": "zenodo", "record": "7", "url": web.url(""), "latest": False, "schedule": 0, **keys}


def measure(work: Path) -> list[tuple[str, str]]:
    healthy = work / "healthy"
    healthy.mkdir()
    (healthy / "README.md").write_text("hello\n")
    rows = []
    cases = [("(a) endless answer, default cap", "endless", {}, None),
             ("(b) endless answer, max_answer_size = 1 MiB", "endless", {"max_answer_size": MIB}, None),
             ("(c) JSON nested 100 000 deep", None, {}, b"[" * 100_000),
             ("(d) embargo until the end of time", None, {},
              json.dumps({"id": 7, "files": [], "metadata": {"access_right": "embargoed",
                                                             "embargo_date": "9999-12-31T23:59:59-01:00"}}).encode())]
    for label, fault, keys, body in cases:
        with FileServer() as web:
            if body is not None:
                web.put("/api/records/7", body, content_type="application/json")
            web.fault = fault
            config = write_config(work / "f2git.toml", {"data_dir": str(work / "data")},
                                  {"hostile": zenodo(web, **keys), "healthy": {"source": "local", "path": str(healthy)}})
            with ServeProcess(config) as server:
                before = rss(server.pid)
                started = time.perf_counter()
                _, answer = server.post("/api/courses/hostile/refresh")
                took = time.perf_counter() - started
                after = rss(server.pid)
                _, other = server.post("/api/courses/healthy/refresh")
            said = re.search(r"max_answer_size \(\d+ bytes\)|nested deeper than \d+ levels|under embargo until \S+",
                             answer.get("error") or "")
            error = said.group(0) if said else (answer.get("error") or "no error")[:60]
            rows.append((label, f"RSS {before / MIB:5.0f} → {after / MIB:5.0f} MiB  failed in {took:5.2f} s"
                                f"  healthy course {'synced' if other.get('ok') else 'FAILED'}  read {web.bytes_sent / MIB:6.1f} MiB"
                                f"  ({error})"))
    return rows


def main(argv: list[str] | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="f2git-answers-") as folder:
        rows = measure(Path(folder))
    table("Hostile LMS answers against f2git serve (127.0.0.1)", rows)


if __name__ == "__main__":
    main()
