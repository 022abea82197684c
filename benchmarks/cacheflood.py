"""The pack cache under attack (issue 18 items 5 and 6): one client sends distinct protocol v2
ls-refs requests, each ~2 MiB once inflated (a few KiB gzipped on the wire), to a server whose
`pack_cache_size` is 1 MiB, while another client polls /healthz.

    python -m benchmarks.cacheflood            # 64 requests
    python -m benchmarks.cacheflood --quick    # 16 requests

Printed: RSS of `f2git serve` and bytes under data_dir/packcache before and after, the largest
learnt-templates file, and /healthz latency during the flood.
"""
from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from tests.cacheattack import disk_usage, flood_body, largest_templates_file, post_git
from tests.serveprocess import ServeProcess, rss, write_config

from .common import generate_course, percentile, table
from .load import CLIENT_ENV

COURSE = "course"
# Measured with this benchmark on f2git 566bd4f (before issue 18's pack cache fixes), 2 cores.
BEFORE = {"requests": "64 (451 KiB sent)", "disk": "0.5 -> 384.3 MiB", "rss": "38 -> 251 MiB",
          "templates": "130867 KiB", "healthz": "p50 0.003 s, max 2.306 s"}


def measure(work: Path, count: int) -> dict[str, str]:
    source = work / "source"
    generate_course(source, 20, 1024 * 1024, seed=7)
    config = write_config(work / "f2git.toml", {"data_dir": "data", "refresh_ttl": 3600,
                                                 "pack_cache_size": 1024 * 1024},
                          {COURSE: {"source": "local", "path": str(source), "schedule": 0}})
    cache = work / "data" / "packcache"
    with ServeProcess(config) as server:
        assert server.post(f"/api/courses/{COURSE}/refresh")[1]["ok"]
        subprocess.run(["git", "clone", "-q", "--depth", "1", server.git_url(COURSE), str(work / "clone")],
                       check=True, env=CLIENT_ENV, capture_output=True)
        time.sleep(1)
        disk_before, rss_before = disk_usage(cache), rss(server.pid)
        latencies: list[float] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                server.request("GET", "/healthz", timeout=60)
                latencies.append(time.perf_counter() - started)
                time.sleep(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        sent = sum(len(gzip.compress(flood_body(number))) for number in range(count))
        for number in range(count):
            post_git(server.git_url(COURSE), flood_body(number), gzipped=True)
        time.sleep(2)  # what the server does after the last answer (storing, learning) counts too
        stop.set()
        poller.join()
        disk_after, rss_after = disk_usage(cache), rss(server.pid)
        templates = largest_templates_file(cache)
    mib = 1024 * 1024
    return {"requests": f"{count} ({sent / 1024:.0f} KiB sent)",
            "disk": f"{disk_before / mib:.1f} -> {disk_after / mib:.1f} MiB",
            "rss": f"{rss_before / mib:.0f} -> {rss_after / mib:.0f} MiB",
            "templates": f"{templates / 1024:.0f} KiB",
            "healthz": f"p50 {percentile(latencies, 0.5):.3f} s, max {max(latencies):.3f} s"}


def report(now: dict[str, str]) -> None:
    rows = [(label, f"{now[key]:<34} before the fix: {BEFORE[key]}") for key, label in (
        ("requests", "distinct ~2 MiB ls-refs bodies"), ("disk", "(d) data_dir/packcache on disk"),
        ("rss", "(d) RSS of f2git serve"), ("templates", "(e) largest learnt-templates file"),
        ("healthz", "(e) /healthz latency meanwhile"))]
    table(f"Under attack: the pack cache, pack_cache_size = 1 MiB ({os.cpu_count()} cores)", rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cacheflood", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 requests")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="f2git-cacheflood-") as folder:
        report(measure(Path(folder), 16 if args.quick else 64))


if __name__ == "__main__":
    main()
