"""The snapshot engine's promises: incremental, streaming, atomic, append-only, safe paths,
deletions only from complete listings, mass deletes refused, one sync at a time."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import time
import tracemalloc

import pytest

from f2git import status
from f2git.snapshot import course_lock, sync_course
from f2git.store import STATE_REF, CourseRepo
from tests.repocheck import fsck_clean


def git(repo: CourseRepo, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo.path), *args], check=True,
                          capture_output=True, text=True).stdout


def tree(repo: CourseRepo, commit: str | None = None) -> dict[str, bytes]:
    commit = commit or repo.head()
    return {path: subprocess.run(["git", "--git-dir", str(repo.path), "cat-file", "blob", blob],
                                 check=True, capture_output=True).stdout
            for path, blob in repo.files(commit).items()}


@pytest.fixture
def course(memory_source, make_config):
    bucket = memory_source("c1", {"README.md": b"# Course\n", "week1/a.ipynb": b"{}", "data/x.csv": b"1,2\n"})
    config = make_config({"c1": {"source": "memory", "bucket": "c1"}})
    return config, config.courses["c1"], bucket, CourseRepo.for_course(config, "c1")


def test_first_sync_writes_exactly_the_released_files(course):
    config, c1, bucket, repo = course
    result = sync_course(config, c1)
    assert result.ok and result.changed and result.added == 3
    assert tree(repo) == bucket.files
    assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert result.commit == repo.head()
    fsck_clean(repo)


def test_unchanged_source_downloads_nothing_and_commits_nothing(course):
    config, c1, bucket, repo = course
    first = sync_course(config, c1)
    opens = bucket.opens
    second = sync_course(config, c1)
    assert second.ok and not second.changed and second.commit == first.commit
    assert bucket.opens == opens
    assert len(repo.log()) == 1


def test_one_edit_downloads_one_file_and_keeps_other_blobs(course):
    config, c1, bucket, repo = course
    sync_course(config, c1)
    before = repo.files(repo.head())
    bucket.files["week1/a.ipynb"] = b'{"cells": [1]}'
    opens = bucket.opens
    result = sync_course(config, c1)
    assert bucket.opens == opens + 1
    assert (result.added, result.modified, result.deleted) == (0, 1, 0)
    after = repo.files(repo.head())
    assert after["README.md"] == before["README.md"] and after["data/x.csv"] == before["data/x.csv"]
    assert after["week1/a.ipynb"] != before["week1/a.ipynb"]
    assert "week1/a.ipynb" in git(repo, "log", "-1", "--format=%B")


def test_history_is_append_only(course):
    config, c1, bucket, repo = course
    commits = [sync_course(config, c1).commit]
    for round_ in range(3):
        bucket.files[f"new{round_}.txt"] = b"x"
        commits.append(sync_course(config, c1).commit)
    assert git(repo, "rev-list", "--first-parent", "main").split() == commits[::-1]


def test_deletions_and_renames_propagate(course):
    config, c1, bucket, repo = course
    sync_course(config, c1)
    bucket.files["week2/a.ipynb"] = bucket.files.pop("week1/a.ipynb")
    result = sync_course(config, c1)
    assert (result.added, result.deleted) == (1, 1)
    assert set(tree(repo)) == {"README.md", "week2/a.ipynb", "data/x.csv"}


def test_a_failed_listing_is_not_a_deletion(course):
    config, c1, bucket, repo = course
    good = sync_course(config, c1).commit
    bucket.fail_listing = "Canvas answered 500 on page 3"
    result = sync_course(config, c1)
    assert not result.ok and "page 3" in result.error
    assert repo.head() == good and set(tree(repo)) == set(bucket.files)
    record = status.read(config, "c1")
    assert record.last_error == result.error and record.commit == good


def test_a_failed_download_publishes_nothing(course):
    config, c1, bucket, repo = course
    good = sync_course(config, c1).commit
    bucket.files.update({"b.txt": b"b", "c.txt": b"c"})
    bucket.fail_open_after = bucket.opens + 1
    result = sync_course(config, c1)
    assert not result.ok and repo.head() == good
    fsck_clean(repo)
    bucket.fail_open_after = None
    assert sync_course(config, c1).added == 2


def test_mass_delete_is_refused_unless_allowed(memory_source, make_config):
    files = {f"f{i}.txt": b"%d" % i for i in range(10)}
    bucket = memory_source("big", files)
    config = make_config({"big": {"source": "memory", "bucket": "big"}})
    course = config.courses["big"]
    repo = CourseRepo.for_course(config, "big")
    good = sync_course(config, course).commit
    for name in list(files)[:6]:
        del bucket.files[name]
    refused = sync_course(config, course)
    assert not refused.ok and "delete 6 of 10" in refused.error and repo.head() == good
    allowed = sync_course(config, course, allow_mass_delete=True)
    assert allowed.ok and allowed.deleted == 6 and len(repo.files(repo.head())) == 4


def test_fewer_than_five_deletions_are_never_a_mass_delete(memory_source, make_config):
    bucket = memory_source("small", {f"f{i}": b"x" for i in range(4)})
    config = make_config({"small": {"source": "memory", "bucket": "small"}})
    sync_course(config, config.courses["small"])
    bucket.files.clear()
    assert sync_course(config, config.courses["small"]).deleted == 4


HOSTILE = {
    "/etc/passwd": "absolute path", "../escape.txt": "'..'", "a/../../b": "'..'",
    ".git/config": "reserved git name", "sub/.GIT/hooks/x": "reserved git name",
    ".gitmodules": "reserved git name", "x/.gitattributes": "reserved git name",
    "git~1/HEAD": "reserved git name", ".git./x": "reserved git name",
    ".g\u200cit/x": "reserved git name", "bad\nname": "control character", "tab\there": "control character",
    "back\\slash": "backslash",
}


def test_hostile_paths_are_reported_and_never_written(memory_source, make_config):
    bucket = memory_source("h", {**{name: b"evil" for name in HOSTILE}, "ok.txt": b"fine"})
    config = make_config({"h": {"source": "memory", "bucket": "h"}})
    result = sync_course(config, config.courses["h"])
    assert result.ok
    repo = CourseRepo.for_course(config, "h")
    assert set(repo.files(repo.head())) == {"ok.txt"}
    reasons = {s.path: s.reason for s in result.skipped}
    for name, why in HOSTILE.items():
        assert why in reasons[name], name
    fsck_clean(repo)


def test_twins_and_file_folder_clashes_are_skipped(memory_source, make_config):
    nfd = "Lo\u0308sung.txt"  # NFD of "Lösung.txt"
    bucket = memory_source("t", {"Lösung.txt": b"nfc", nfd: b"nfd", "README.md": b"a", "readme.md": b"b",
                                 "a": b"file", "a/b.txt": b"below a file", "./dot//x.txt": b"x"})
    config = make_config({"t": {"source": "memory", "bucket": "t"}})
    result = sync_course(config, config.courses["t"])
    repo = CourseRepo.for_course(config, "t")
    files = set(repo.files(repo.head()))
    assert files == {"Lösung.txt", "README.md", "a", "dot/x.txt"}
    skipped = {s.path for s in result.skipped}
    assert {"readme.md", "a/b.txt"} <= skipped and (nfd in skipped or "Lösung.txt" in skipped)


def test_max_file_size_skips_and_reports(memory_source, make_config):
    memory_source("m", {"big.bin": b"x" * 2000, "small.txt": b"x"})
    config = make_config({"m": {"source": "memory", "bucket": "m", "max_file_size": 1000}})
    result = sync_course(config, config.courses["m"])
    assert [s.path for s in result.skipped] == ["big.bin"] and "max_file_size" in result.skipped[0].reason
    repo = CourseRepo.for_course(config, "m")
    assert set(repo.files(repo.head())) == {"small.txt"}


def test_include_and_exclude(memory_source, make_config):
    memory_source("g", {"a.ipynb": b"1", "sol/a.ipynb": b"2", "notes/x.md": b"3", "notes/y.txt": b"4"})
    config = make_config({"g": {"source": "memory", "bucket": "g", "include": ["**.ipynb", "notes/**"],
                                "exclude": ["sol/**"]}})
    sync_course(config, config.courses["g"])
    repo = CourseRepo.for_course(config, "g")
    assert set(repo.files(repo.head())) == {"a.ipynb", "notes/x.md", "notes/y.txt"}


def test_dry_run_plans_without_committing(course):
    config, c1, bucket, repo = course
    good = sync_course(config, c1).commit
    bucket.files["new.txt"] = b"new"
    del bucket.files["README.md"]
    plan = sync_course(config, c1, dry_run=True)
    assert plan.ok and plan.paths == {"added": ["new.txt"], "modified": [], "deleted": ["README.md"]}
    assert repo.head() == good


def test_sync_state_is_hidden_and_describes_the_served_commit(course):
    config, c1, bucket, repo = course
    result = sync_course(config, c1)
    state, _ = repo.read_state()
    assert state.commit == result.commit and set(state.files) == set(bucket.files)
    assert git(repo, "config", "--get-all", "uploadpack.hideRefs").split() == ["refs/f2git"]
    refs = git(repo, "for-each-ref", "--format=%(refname)").split()
    assert sorted(refs) == [STATE_REF, "refs/heads/main"]  # fast-import's scratch refs are gone


def test_state_out_of_step_with_main_is_reverified_without_a_new_commit(course):
    """A crash between the two ref updates: the state no longer names main's commit."""
    config, c1, bucket, repo = course
    first = sync_course(config, c1).commit
    _, first_state = repo.read_state()
    bucket.files["b.txt"] = b"b"
    second = sync_course(config, c1).commit
    git(repo, "update-ref", STATE_REF, first_state)  # main moved, the state did not
    assert repo.read_state()[0].commit == first
    opens = bucket.opens
    result = sync_course(config, c1)
    assert result.ok and not result.changed and repo.head() == second
    assert bucket.opens == opens + len(bucket.files)  # everything re-read once, nothing lost
    state, _ = repo.read_state()
    assert state.commit == second


def test_bodies_stream_without_being_held_in_memory(memory_source, make_config, tmp_path):
    big = tmp_path / "source" / "big.bin"
    big.parent.mkdir()
    with open(big, "wb") as handle:
        for _ in range(64):
            handle.write(os.urandom(1 << 20))
    config = make_config({"s": {"source": "local", "path": str(big.parent)}})
    tracemalloc.start()
    result = sync_course(config, config.courses["s"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.ok and result.added == 1
    assert peak < 16 * (1 << 20), f"peak {peak} bytes for a 64 MiB file"


def _hold_lock(config, started, release):
    with course_lock(config, "c1"):
        started.set()
        release.wait(30)


def test_two_syncs_of_one_course_never_run_at_once(course):
    config, c1, bucket, repo = course
    context = multiprocessing.get_context("fork")
    started, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(config, started, release))
    holder.start()
    try:
        assert started.wait(10)
        lock = course_lock(config, "c1")
        lock.timeout = 0.2
        with pytest.raises(Exception):
            lock.acquire()
        release.set()
        holder.join(10)
        assert sync_course(config, c1).ok
    finally:
        release.set()
        holder.join(10)


def test_empty_course_still_gets_a_snapshot(memory_source, make_config):
    memory_source("e", {})
    config = make_config({"e": {"source": "memory", "bucket": "e"}})
    result = sync_course(config, config.courses["e"])
    repo = CourseRepo.for_course(config, "e")
    assert result.ok and repo.head() == result.commit and repo.files(result.commit) == {}
    assert "nothing released yet" in git(repo, "log", "-1", "--format=%s")


def test_status_records_success_and_failure(course):
    config, c1, bucket, repo = course
    before = time.time()
    ok = sync_course(config, c1)
    record = status.read(config, "c1")
    assert record.last_check >= before - 1 and record.last_change == record.last_check
    assert record.history[0]["commit"] == ok.commit and record.history[0]["paths"]["added"]
    bucket.fail_listing = "gone"
    sync_course(config, c1)
    record = status.read(config, "c1")
    assert record.last_error == "gone" and record.commit == ok.commit and record.last_change is not None
    assert [h["ok"] for h in record.history] == [False, True]


def test_leftovers_of_a_killed_sync_do_not_block_the_next(course):
    """A sync killed inside `git update-ref` or fast-import leaves lock files and scratch objects."""
    config, c1, bucket, repo = course
    sync_course(config, c1)
    leftovers = [repo.path / "refs/heads/main.lock", repo.path / "refs/f2git/state.lock",
                 repo.path / "packed-refs.lock", repo.path / "objects/pack/tmp_pack_AbC123",
                 repo.path / "f2git-marks-x1y2"]
    for leftover in leftovers:
        leftover.write_bytes(b"0" * 41)
    git(repo, "update-ref", "refs/f2git/incoming/dead/main", repo.head())
    bucket.files["after-crash.txt"] = b"arrives"
    result = sync_course(config, c1)
    assert result.ok and result.added == 1, result.error
    assert not [p for p in leftovers if p.exists()]
    assert sorted(git(repo, "for-each-ref", "--format=%(refname)").split()) == [STATE_REF, "refs/heads/main"]
    fsck_clean(repo)
