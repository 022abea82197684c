"""Retract at scale: the time one retract takes on a long course history, and the lecture-start
burst of depth-1 clones right after it (the prebuilt answers rebuilt) against one before it.

    python -m benchmarks retract [quick]      F2GIT_BENCH_QUICK=1 for a small run
"""
from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import table, timed
from f2git import holds
from f2git.config import load
from f2git.store import CourseRepo, git_env
from tests.serveprocess import ServeProcess, write_config

FULL = {"snapshots": 1000, "files": 3000, "clones": 60}
QUICK = {"snapshots": 100, "files": 300, "clones": 20}
COURSE = "big"
LEAK = "solutions/exam.ipynb"


def build_history(repo: CourseRepo, snapshots: int, files: int) -> None:
    """An empty root, a first snapshot of `files` files, then snapshots changing 3 files each;
    the leaked file arrives in snapshot 10 (so ~99% of the history is rewritten)."""
    repo.ensure()
    root = repo.empty_root()
    stream = []

    def blob(text: str) -> None:
        data = text.encode()
        stream.append(b"data %d\n" % len(data) + data + b"\n")

    for n in range(1, snapshots + 1):
        stream.append(b"commit refs/heads/main\ncommitter f2git <f2git@localhost> %d +0000\n" % (1_700_000_000 + n))
        message = f"Snapshot {n}\n".encode()
        stream.append(b"data %d\n%s" % (len(message), message))
        if n == 1:
            stream.append(f"from {root}\n".encode())
        changed = range(files) if n == 1 else [(n * 7 + k) % files for k in range(3)]
        for index in changed:
            stream.append(f"M 100644 inline unit{index % 12:02d}/file{index:05d}.txt\n".encode())
            blob(f"file {index}, version {n}\n" * 8)
        if n == 10:
            stream.append(f"M 100644 inline {LEAK}\n".encode())
            blob("the answers\n" * 50)
        stream.append(b"\n")
    stream.append(b"done\n")
    subprocess.run(["git", "--git-dir", str(repo.path), "fast-import", "--quiet", "--done"],
                   input=b"".join(stream), check=True, env=git_env())
    subprocess.run(["git", "--git-dir", str(repo.path), "repack", "-adq"], check=True, env=git_env())


def burst(url: str, count: int, work: Path) -> float:
    """Wall time for `count` concurrent depth-1 clones (a lecture's first clicks)."""
    work.mkdir()

    def clone(n: int) -> None:
        subprocess.run(["git", "clone", "-q", "--depth", "1", url, str(work / str(n))], check=True,
                       env=git_env(), capture_output=True)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(clone, range(count)))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    size = QUICK if os.environ.get("F2GIT_BENCH_QUICK") == "1" or "quick" in argv else FULL
    with tempfile.TemporaryDirectory(prefix="f2git-retract-", dir=os.environ.get("F2GIT_BENCH_DIR")) as folder:
        work = Path(folder)
        (work / "empty").mkdir()
        config_path = write_config(work / "f2git.toml", {"data_dir": str(work / "data"), "refresh_ttl": 3600},
                                   {COURSE: {"source": "local", "path": str(work / "empty"), "schedule": 0}})
        config = load(str(config_path))
        repo = CourseRepo.for_course(config, COURSE)
        built, _ = timed(build_history, repo, size["snapshots"], size["files"])
        # no source to read: the clicks measure serving alone (a held course skips its syncs)
        holds.hold(config, COURSE, {"reason": "benchmark: serving only"})
        rows = [("history", f"{size['snapshots']} snapshots x {size['files']} files, built in {built:.1f} s")]
        with ServeProcess(config_path) as server:
            url = server.git_url(COURSE)
            cold = burst(url, size["clones"], work / "cold")
            warm = burst(url, size["clones"], work / "warm")
            started = time.perf_counter()
            status, answer = server.post(f"/api/courses/{COURSE}/retract", {"paths": [LEAK]})
            took = time.perf_counter() - started
            assert status == 200, answer
            time.sleep(1.0)  # the prebuilt answers of the new main are built meanwhile
            after = burst(url, size["clones"], work / "after")
        rows += [
            ("retract (API, server running)", f"{took:.2f} s wall, {answer['rewritten']} snapshots rewritten"),
            (f"{size['clones']} depth-1 clones, cold cache", f"{cold:.2f} s"),
            (f"{size['clones']} depth-1 clones, warm cache", f"{warm:.2f} s"),
            (f"{size['clones']} depth-1 clones right after the retract", f"{after:.2f} s"),
        ]
    table("Retract on a long history (the next lecture-start burst after it)", rows)


if __name__ == "__main__":
    main()
