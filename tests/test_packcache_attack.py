"""The pack cache under attack (issue 18, items 3, 5, 6, 12, 13), through a running `f2git serve`
and real git: two servers on one data dir, floods of distinct requests, junk that would decide
what is built ahead, other local users reading the cache; and dropping a course's answers."""
from __future__ import annotations

import os
import random
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from f2git.server.packtemplates import OID
from f2git.store import CourseRepo
from tests.cacheattack import (cpu_seconds, disk_usage, flood_body, junk_clone_body, junk_fetch_body,
                               largest_templates_file, post_git)
from tests.repohelpers import SourceFolder, git, machine_git_config_ignored  # noqa: F401 (autouse)
from tests.serveprocess import ROOT, ServeProcess, rss, write_config
from tests.serverhelpers import RunningServer, config_factory, wait_until

COURSE = "cs101"
MIB = 1024 * 1024


@pytest.fixture
def source(tmp_path) -> SourceFolder:
    folder = SourceFolder(tmp_path / "source")
    folder.write("README.md", "# CS 101\n")
    folder.write("week1/intro.ipynb", '{"cells": []}\n')
    return folder


def similar_files(source: SourceFolder, count: int = 120, seed: int = 1) -> None:
    """Files that delta against each other: git's threaded delta search packs them a little
    differently from run to run, so two servers' answers to one request differ in length."""
    rng = random.Random(seed)
    words = [f"word{n}" for n in range(400)]
    base = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(600)]
    for number in range(count):
        lines = list(base)
        for _ in range(40):
            lines[rng.randrange(len(lines))] = " ".join(rng.choice(words) for _ in range(12))
        source.write(f"notes/n{number:03d}.txt", "\n".join(lines) + "\n")


def clone(url: str, target: Path) -> None:
    git("-c", "protocol.version=2", "-c", "transfer.fsckObjects=true", "clone", "-q", "--depth", "1", url, target)
    git("fsck", "--strict", "--no-dangling", cwd=target)


def serve_config(tmp_path: Path, source: SourceFolder, name: str = "f2git.toml", **server) -> Path:
    return write_config(tmp_path / name, {"data_dir": "data", "refresh_ttl": 3600, **server},
                        {COURSE: {"source": "local", "path": str(source.path), "schedule": 0}})


# -- 3. two servers on one data dir -----------------------------------------------------------

def test_two_servers_on_one_data_dir_serve_whole_clones(tmp_path, source):
    """Each server stores its own answer to the same request over the other's (lengths differ
    from run to run); each still serves every clone whole, and neither spins."""
    similar_files(source)
    config = serve_config(tmp_path, source, pack_cache_size=64 * MIB)
    with ServeProcess(config) as first, ServeProcess(config) as second:
        assert first.post(f"/api/courses/{COURSE}/refresh")[1]["ok"]
        servers = [first, second] * 4
        for number, server in enumerate(servers):
            clone(server.git_url(COURSE), tmp_path / f"c{number}")
        lengths = {path.stat().st_size for path in (tmp_path / "data" / "packcache" / COURSE).rglob("*")
                   if path.is_file()}
        assert lengths, "answers are stored in the shared folder"
        # And at once, both servers, interleaved.
        failures: list[str] = []

        def one(number: int) -> None:
            try:
                clone(servers[number % 2].git_url(COURSE), tmp_path / f"p{number}")
            except Exception as error:  # noqa: BLE001 (collected, asserted below)
                failures.append(f"{number}: {error}")

        threads = [threading.Thread(target=one, args=(number,)) for number in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        assert not failures
        time.sleep(0.5)
        used = [cpu_seconds(server.pid) for server in (first, second)]
        time.sleep(2)
        assert [cpu_seconds(server.pid) - before for server, before in zip((first, second), used)] < [0.5, 0.5]
        assert "Traceback" not in first.output() + second.output()


def test_two_servers_on_one_data_dir_keep_to_pack_cache_size_together(tmp_path, source):
    """Each server used to bound only what it stored itself: two flooded servers kept twice
    `pack_cache_size` on the shared disk. Now each keeps to its share."""
    config = serve_config(tmp_path, source, pack_cache_size=256 * 1024)
    cache = tmp_path / "data" / "packcache"
    with ServeProcess(config) as first, ServeProcess(config) as second:
        clone(first.git_url(COURSE), tmp_path / "clone")
        time.sleep(2.5)  # the first counts the servers sharing its cache every 2 s
        for number in range(300):
            server = (first, second)[number % 2]
            assert post_git(server.git_url(COURSE), flood_body(number, size=600), source="127.0.0.2") == 200
        time.sleep(2)
        answers = [path for path in cache.rglob("*") if path.is_file() and path.parent.parent.name == COURSE]
        assert sum(path.stat().st_blocks * 512 for path in answers) <= 256 * 1024
        assert len(answers) > 16  # both still store
    # alone again, a server has the whole size
    with ServeProcess(config) as alone:
        for number in range(300, 420):
            assert post_git(alone.git_url(COURSE), flood_body(number, size=600), source="127.0.0.2") == 200
        time.sleep(1)
        answers = [path for path in cache.rglob("*") if path.is_file() and path.parent.parent.name == COURSE]
        assert 128 * 1024 < sum(path.stat().st_blocks * 512 for path in answers) <= 256 * 1024


def test_a_stored_answer_cut_short_is_computed_again_or_ends_with_an_error(tmp_path, source, monkeypatch):
    """A stored file cut short (by a hand other than f2git) is never served as whole: at open
    it is computed again; cut while it is being sent, the response ends at once, no spin."""
    from f2git.server.packcache import PackCache

    similar_files(source, count=40)
    make = config_factory(tmp_path, {COURSE: {"source": "local", "path": str(source.path), "schedule": 0}},
                          refresh_ttl=3600)
    with RunningServer(make) as server:
        clone(server.git_url(COURSE), tmp_path / "first")
        cache = server.server.app.settings["f2git_packcache"]
        assert wait_until(lambda: server.call(lambda: cache.idle))
        big = server.call(lambda: [entry.path for entry in cache._entries.values() if entry.data is None])
        assert big, "the pack is served from its file"
        for path in big:
            os.truncate(path, path.stat().st_size // 2)
        computed = server.call(lambda: cache.computed)
        clone(server.git_url(COURSE), tmp_path / "again")
        assert server.call(lambda: cache.computed) > computed
        assert wait_until(lambda: server.call(lambda: cache.idle))

        opened = PackCache.open

        def cut_after_open(self, request, *args, **kwargs):
            reader = opened(self, request, *args, **kwargs)
            if reader.stored_file:
                os.truncate(reader.entry.path, reader.end // 2)
            return reader

        monkeypatch.setattr(PackCache, "open", cut_after_open)
        started = time.monotonic()
        done = subprocess.run(["git", "clone", "-q", "--depth", "1", server.git_url(COURSE), str(tmp_path / "cut")],
                              capture_output=True, timeout=60)
        assert done.returncode != 0  # a cut answer is never taken for a whole one
        assert time.monotonic() - started < 30


# -- 5. everything the cache keeps counts ------------------------------------------------------

def test_a_flood_of_distinct_ls_refs_bodies_stays_within_the_cache_bounds(tmp_path, source):
    """Distinct ~2 MiB ls-refs bodies (a few KiB gzipped) with tiny answers: before, each was
    stored with its body (hex) beside it: 64 of them took 384 MiB of disk with pack_cache_size
    = 1 MiB, and 213 MiB of RSS."""
    config = serve_config(tmp_path, source, pack_cache_size=MIB)
    cache = tmp_path / "data" / "packcache"
    with ServeProcess(config) as server:
        clone(server.git_url(COURSE), tmp_path / "clone")
        time.sleep(1)
        memory_before = rss(server.pid)
        for number in range(48):
            assert post_git(server.git_url(COURSE), flood_body(number), gzipped=True, source="127.0.0.2") == 200
        time.sleep(2)  # learnt templates are written a second after they change
        assert disk_usage(cache) <= 2 * MIB
        assert largest_templates_file(cache) < 64 * 1024
        assert rss(server.pid) - memory_before < 48 * MIB
        clone(server.git_url(COURSE), tmp_path / "after")  # still serving


def test_small_distinct_answers_count_against_the_limit_with_their_disk_blocks(tmp_path, source):
    """Tiny answers each take at least a disk block: pack_cache_size bounds what they take on
    disk, not just their bytes."""
    config = serve_config(tmp_path, source, pack_cache_size=256 * 1024)
    cache = tmp_path / "data" / "packcache"
    with ServeProcess(config) as server:
        clone(server.git_url(COURSE), tmp_path / "clone")
        for number in range(300):
            assert post_git(server.git_url(COURSE), flood_body(number, size=600), source="127.0.0.2") == 200
        time.sleep(2)
        answers = [path for path in cache.rglob("*") if path.is_file() and path.parent.parent.name == COURSE]
        assert sum(path.stat().st_blocks * 512 for path in answers) <= 256 * 1024
        assert 0 < len(answers) < 64


# -- 6. learning never blocks ----------------------------------------------------------------

def test_learning_templates_never_stalls_the_server(tmp_path, source):
    """Many distinct template-shaped bodies (no object ids), small and large: /healthz stays
    fast, and what is learnt stays small (before: a 128 MB file rewritten on the event loop,
    /healthz max 2.3 s)."""
    config = serve_config(tmp_path, source)
    cache = tmp_path / "data" / "packcache"
    with ServeProcess(config) as server:
        clone(server.git_url(COURSE), tmp_path / "clone")
        latencies: list[float] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                assert server.request("GET", "/healthz", timeout=30)[0] == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.01)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            for number in range(150):
                size = 2 * MIB - 4096 if number % 10 == 0 else 3900
                assert post_git(server.git_url(COURSE), flood_body(number, size=size), gzipped=True,
                                source=f"127.0.0.{2 + number % 5}") == 200
            time.sleep(1.5)
        finally:
            stop.set()
            poller.join()
        assert len(latencies) > 20 and max(latencies) < 0.5
        assert 0 < largest_templates_file(cache) <= 32 * 2 * 4096 + 32 * 2048


# -- 12. junk does not decide what is built ahead ----------------------------------------------

@pytest.mark.parametrize("junk_from", ["127.0.0.2", "127.0.0.1"])
def test_junk_requests_do_not_decide_what_is_built_ahead(tmp_path, source, junk_from):
    """A student clones; one client sends 32 junk requests (from another address, each with the
    exact shape of a depth-1 clone; or ls-refs and fetches from the student's own address, as
    behind one proxy); after the release a real clone runs git 0 times."""
    make = config_factory(tmp_path, {COURSE: {"source": "local", "path": str(source.path), "schedule": 0}},
                          refresh_ttl=0)
    with RunningServer(make) as server:
        cache = server.server.app.settings["f2git_packcache"]
        clone(server.git_url(COURSE), tmp_path / "first")
        head = CourseRepo.for_course(server.config, COURSE).head()
        for number in range(32):
            if junk_from != "127.0.0.1":  # all with the shape of the clone: only its count of clients tells
                body = junk_clone_body(number, head)
            elif number % 2:
                body = flood_body(number, size=300 + number)
            else:
                body = junk_fetch_body(number, head)
            assert post_git(server.git_url(COURSE), body, source=junk_from) == 200
        source.write("week2/new.ipynb", "new\n")
        git("ls-remote", server.git_url(COURSE))  # a click: the release is synced
        assert wait_until(lambda: server.call(lambda: cache.idle), timeout=120)
        computed = server.call(lambda: cache.stats()["computed"])
        clone(server.git_url(COURSE), tmp_path / "after")
        assert (tmp_path / "after" / "week2" / "new.ipynb").read_text() == "new\n"
        assert server.call(lambda: cache.stats()["computed"]) == computed


# -- 13. everything under data_dir is private --------------------------------------------------

def test_nothing_under_data_dir_or_backup_dir_is_readable_by_others(tmp_path, source):
    config = serve_config(tmp_path, source, backup_dir=str(tmp_path / "backup"))
    old = os.umask(0o022)  # what a shell gives: f2git must not rely on it
    try:
        done = subprocess.run([sys.executable, "-m", "f2git.cli", "--config", str(config), "sync", "--json"],
                              capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr
        source.write("week2/more.ipynb", "more\n")
        with ServeProcess(config) as server:
            assert server.post(f"/api/courses/{COURSE}/refresh")[1]["ok"]
            clone(server.git_url(COURSE), tmp_path / "clone")
            git("pull", "-q", cwd=tmp_path / "clone")
            time.sleep(1.5)  # learnt templates are written
    finally:
        os.umask(old)
    walked = 0
    for top in (tmp_path / "data", tmp_path / "backup"):
        for path in [top, *top.rglob("*")]:
            mode = path.lstat().st_mode
            assert not stat.S_IMODE(mode) & 0o077, f"{path} is {stat.filemode(mode)}"
            walked += 1
    assert (tmp_path / "data" / "packcache" / COURSE).is_dir() and (tmp_path / "backup").is_dir() and walked > 50


# -- for release control: dropping a course's answers ------------------------------------------

def test_drop_course_forgets_its_answers_and_templates_also_after_a_restart(tmp_path, source):
    make = config_factory(tmp_path, {COURSE: {"source": "local", "path": str(source.path), "schedule": 0},
                                     "other": {"source": "local", "path": str(source.path), "schedule": 0}},
                          refresh_ttl=3600)
    root = tmp_path / "data" / "packcache"
    with RunningServer(make) as server:
        cache = server.server.app.settings["f2git_packcache"]
        for course in (COURSE, "other"):
            clone(server.git_url(course), tmp_path / f"{course}-1")
        git("pull", "-q", cwd=tmp_path / f"{COURSE}-1")  # the learnt templates exist
        assert wait_until(lambda: server.call(lambda: cache.idle))
        assert server.call(lambda: cache.templates.ranked(COURSE))
        assert wait_until(lambda: (root / ".templates" / f"{COURSE}.json").exists(), timeout=10)
        server.call(lambda: cache.drop_course(COURSE))
        assert not (root / COURSE).exists()
        assert server.call(lambda: [entry for entry in cache._entries.values() if entry.course == COURSE]) == []
        assert not [t for t in server.call(lambda: cache.templates.ranked(COURSE)) if OID.search(t[5])]
        kept = server.call(lambda: len([entry for entry in cache._entries.values() if entry.course == "other"]))
        assert kept > 0
        computed = server.call(lambda: cache.computed)
        clone(server.git_url(COURSE), tmp_path / f"{COURSE}-2")  # answered by git again, not from the old
        assert server.call(lambda: cache.computed) > computed
        assert wait_until(lambda: server.call(lambda: cache.idle))
        server.call(lambda: cache.drop_course(COURSE))
        assert wait_until(lambda: server.call(lambda: cache.idle))
        rebuilt = server.call(lambda: {entry.commit for entry in cache._entries.values() if entry.course == COURSE})
    assert rebuilt <= {CourseRepo(tmp_path / "data" / "repos" / f"{COURSE}.git").head()}  # only the history served now
    with RunningServer(make) as server:
        cache = server.server.app.settings["f2git_packcache"]
        assert server.call(lambda: {e.commit for e in cache._entries.values() if e.course == COURSE}) <= rebuilt
        assert not [t for t in server.call(lambda: cache.templates.ranked(COURSE)) if OID.search(t[5])]
        assert server.call(lambda: len([entry for entry in cache._entries.values() if entry.course == "other"])) == kept
