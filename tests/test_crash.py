"""`kill -9` of `f2git sync` at many moments of a large sync: the repo stays fsck-clean,
main is the previous or the next complete snapshot, and the next run completes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from f2git.config import load
from f2git.store import CourseRepo
from tests.repocheck import snapshot, write_course

def run_sync(config_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "f2git.cli", "--config", str(config_path), "sync", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_kill_9_at_any_moment_leaves_a_complete_snapshot(tmp_path):
    source = tmp_path / "source"
    config_path = tmp_path / "f2git.toml"
    config_path.write_text(f'[server]\ndata_dir = "data"\n[courses.big]\nsource = "local"\npath = "{source}"\n')
    config = load(config_path)
    repo = CourseRepo.for_course(config, "big")

    generations = [write_course(source, 0)]
    assert run_sync(config_path).wait(120) == 0
    assert snapshot(repo) == generations[0]

    # Measure one full sync to spread the kills over it.
    generations.append(write_course(source, 1))
    started = time.monotonic()
    assert run_sync(config_path).wait(120) == 0
    duration = time.monotonic() - started

    kills = 0
    for attempt in range(12):
        generations.append(write_course(source, attempt + 2))
        process = run_sync(config_path)
        time.sleep(duration * (attempt + 0.5) / 12)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait(60)
        fsck = subprocess.run(["git", "--git-dir", str(repo.path), "fsck", "--strict", "--no-dangling"],
                              capture_output=True, text=True)
        assert fsck.returncode == 0, f"kill {attempt}: {fsck.stdout}{fsck.stderr}"
        served = snapshot(repo)
        assert served in (generations[-2], generations[-1]), f"kill {attempt}: a torn snapshot"
        # The next run completes and serves the newest generation.
        assert run_sync(config_path).wait(120) == 0
        assert snapshot(repo) == generations[-1]
    assert kills >= 6, "the sync finished before most kills: make the course larger"
