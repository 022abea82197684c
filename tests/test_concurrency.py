"""Two `f2git serve` processes and the CLI syncing the same data dir at the same moment:
no update is lost or torn — one commit per change, every commit a complete snapshot,
history linear, the sync state describing main, and the repo fsck-clean."""
from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from f2git.config import load
from f2git.store import CourseRepo
from f2git.syncstate import StateStore
from tests.serveprocess import ROOT, ServeProcess, write_config
from tests.repocheck import fsck_clean, snapshot, write_course

ROUNDS = 5


def cli_sync(config_path) -> dict:
    process = subprocess.run([sys.executable, "-m", "f2git.cli", "--config", str(config_path), "sync", "--json"],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
    return json.loads(process.stdout.splitlines()[-1])


def tree_at(repo: CourseRepo, commit: str) -> dict[str, bytes]:
    return {path: subprocess.run(["git", "--git-dir", str(repo.path), "cat-file", "blob", blob],
                                 check=True, capture_output=True).stdout
            for path, blob in repo.files(commit).items()}


def test_two_servers_and_the_cli_never_lose_or_tear_an_update(tmp_path):
    source = tmp_path / "source"
    config_path = write_config(tmp_path / "f2git.toml", {"data_dir": "data", "refresh_ttl": 0},
                               {"big": {"source": "local", "path": str(source), "schedule": 0}})
    repo = CourseRepo.for_course(load(config_path), "big")
    generations = []
    with ServeProcess(config_path) as first, ServeProcess(config_path) as second, \
            ThreadPoolExecutor(max_workers=3) as pool:
        for generation in range(ROUNDS):
            generations.append(write_course(source, generation))
            # All three at once, on one course, in three processes.
            results = list(pool.map(lambda run: run(), [
                lambda: first.post("/api/courses/big/refresh")[1],
                lambda: second.post("/api/courses/big/refresh")[1],
                lambda: cli_sync(config_path),
            ]))
            assert all(result["ok"] for result in results), results
            # Exactly one of them wrote the change; the others found nothing new.
            assert sum(result["changed"] for result in results) == 1, results
            assert snapshot(repo) == generations[-1]
        assert "Traceback" not in first.output() + second.output()

    fsck_clean(repo)
    history = subprocess.run(["git", "--git-dir", str(repo.path), "rev-list", "--parents", "main"],
                             check=True, capture_output=True, text=True).stdout.split("\n")[:-2]  # [-2]: the empty root
    assert len(history) == ROUNDS  # one commit per change, none lost, none doubled
    assert all(len(line.split()) <= 2 for line in history)  # linear: no merges
    for line, expected in zip(history, reversed(generations)):
        assert tree_at(repo, line.split()[0]) == expected  # every snapshot complete
    assert StateStore.for_course(load(config_path), "big").read().commit == repo.head()
