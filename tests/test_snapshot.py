"""The snapshot engine's promises: incremental, streaming, atomic, append-only, safe paths,
deletions only from complete listings, mass deletes refused, one sync at a time."""
from __future__ import annotations

import io
import json
import multiprocessing
import os
import sqlite3
import subprocess
import time
import tracemalloc

import pytest

from f2git import status
from f2git.outcome import LISTED_PATHS
from f2git.snapshot import Spool, course_lock, sync_course, too_large
from f2git.store import BIG_FILE, CourseRepo, GitError, SnapshotWriter
from f2git.syncstate import StateStore
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
    *snapshots, root = git(repo, "rev-list", "--first-parent", "main").split()
    assert snapshots == commits[::-1]
    assert git(repo, "ls-tree", root) == "" and git(repo, "rev-list", "--parents", "-1", root).split() == [root]


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
    assert refused.mass_delete_refused == 6 and refused.to_json()["mass_delete_refused"] == 6
    allowed = sync_course(config, course, allow_mass_delete=True)
    assert allowed.ok and allowed.deleted == 6 and len(repo.files(repo.head())) == 4
    assert allowed.mass_delete_refused is None


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


def test_a_file_blocks_every_path_below_it_at_any_depth(memory_source, make_config):
    deep = "/".join(["d"] * 1500) + "/leaf.txt"  # deeper than Python's recursion limit
    bucket = memory_source("deep", {"x": b"file", "X/y/z.txt": b"1", "x/y/w/v.txt": b"2", "y/x": b"3",
                                    deep: b"4", "d/d": b"5"})
    config = make_config({"deep": {"source": "memory", "bucket": "deep"}})
    result = sync_course(config, config.courses["deep"])
    repo = CourseRepo.for_course(config, "deep")
    assert set(repo.files(repo.head())) == {"x", "y/x", "d/d"}
    reasons = {s.path: s.reason for s in result.skipped}
    assert reasons == {"X/y/z.txt": "x is a file, not a folder", "x/y/w/v.txt": "x is a file, not a folder",
                       deep: "d/d is a file, not a folder"}


def test_max_file_size_skips_and_reports(memory_source, make_config):
    memory_source("m", {"big.bin": b"x" * 2000, "small.txt": b"x"})
    config = make_config({"m": {"source": "memory", "bucket": "m", "max_file_size": 1000}})
    result = sync_course(config, config.courses["m"])
    assert [s.path for s in result.skipped] == ["big.bin"] and "max_file_size" in result.skipped[0].reason
    repo = CourseRepo.for_course(config, "m")
    assert set(repo.files(repo.head())) == {"small.txt"}


def test_a_skipped_size_is_in_mb_and_names_the_setting_that_lets_it_through():
    assert too_large(12_900_000, 10 << 20) == \
        "12.3 MB, larger than max_file_size (10 MB): raise max_file_size for this course"
    assert too_large(None, 100 << 20) == "larger than max_file_size (100 MB): raise max_file_size for this course"
    assert too_large(2000, 1000).startswith("2 KB, larger than max_file_size (1000 bytes)")


def test_ten_thousand_skipped_files_make_a_bounded_answer(memory_source, make_config):
    bucket = memory_source("many", {f"data/big{i:05d}.bin": b"xx" for i in range(10_000)})
    bucket.files["README.md"] = b"x"
    config = make_config({"many": {"source": "memory", "bucket": "many", "max_file_size": 1}})
    result = sync_course(config, config.courses["many"])
    assert result.ok and result.skipped_total == 10_000 and len(result.skipped) == LISTED_PATHS
    answer = result.to_json()
    assert answer["skipped_total"] == 10_000 and len(json.dumps(answer)) < 50_000
    stored = status.read(config, "many")
    assert len(stored.skipped) == LISTED_PATHS and len(json.dumps(stored.to_json())) < 100_000


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


def all_objects(repo: CourseRepo) -> set[str]:
    out = git(repo, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
    return set(out.split())


def test_sync_state_lives_outside_the_served_repo_and_describes_the_served_commit(course):
    config, c1, bucket, repo = course
    result = sync_course(config, c1)
    state = StateStore.for_course(config, "c1").read()
    assert state.commit == result.commit
    assert {path: row.blob for path, row in state.files.items()} == repo.files(result.commit)
    assert not StateStore.for_course(config, "c1").path.is_relative_to(config.repos_dir)
    # The served repo holds the snapshots and nothing else: no hidden ref, no stray object.
    assert git(repo, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/main"]
    reachable = {line.split()[0] for line in git(repo, "rev-list", "--objects", "--all").splitlines()}
    assert all_objects(repo) == reachable


def test_state_behind_main_is_reverified_without_a_new_commit(course):
    """A state that names an older commit than main's: only what it does not vouch for is read."""
    config, c1, bucket, repo = course
    store = StateStore.for_course(config, "c1")
    first = sync_course(config, c1).commit
    saved = store.path.read_bytes()
    bucket.files["b.txt"] = b"b"
    bucket.files["README.md"] = b"# Course, edited\n"
    second = sync_course(config, c1).commit
    store.path.write_bytes(saved)  # main moved, the state did not
    assert store.read().commit == first
    opens = bucket.opens
    result = sync_course(config, c1)
    assert result.ok and not result.changed and repo.head() == second
    assert bucket.opens == opens + 2  # b.txt and README.md re-read, the rest vouched for by its blob
    assert store.read().commit == second and set(store.read().files) == set(bucket.files)


def test_a_crash_between_recording_and_publishing_loses_nothing(course):
    """The state already names a commit main never got: the next run re-reads what changed."""
    config, c1, bucket, repo = course
    good = sync_course(config, c1).commit
    bucket.files["week1/a.ipynb"] = b'{"cells": [2]}'
    bucket.files["c.txt"] = b"c"

    def crash(self, new_main, old_main):
        raise GitError("killed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SnapshotWriter, "publish", crash)
        failed = sync_course(config, c1)
    assert not failed.ok and repo.head() == good
    assert StateStore.for_course(config, "c1").read().commit not in (good, None)

    opens = bucket.opens
    healed = sync_course(config, c1)
    assert healed.ok and (healed.added, healed.modified) == (1, 1)
    assert bucket.opens == opens + 2
    assert tree(repo) == bucket.files
    assert StateStore.for_course(config, "c1").read().commit == repo.head()
    fsck_clean(repo)


def test_a_state_that_cannot_be_recorded_publishes_nothing(course):
    """The state is recorded before main moves: a full disk there leaves the last snapshot."""
    config, c1, bucket, repo = course
    good = sync_course(config, c1).commit
    bucket.files["new.txt"] = b"new"

    def full(self, *args):
        raise sqlite3.OperationalError("database or disk is full")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StateStore, "_record", full)
        failed = sync_course(config, c1)
    assert not failed.ok and failed.error == "could not write the snapshot: the disk is full"
    assert repo.head() == good and StateStore.for_course(config, "c1").read().commit == good
    healed = sync_course(config, c1)
    assert healed.ok and healed.added == 1 and tree(repo) == bucket.files
    fsck_clean(repo)


def test_a_torn_state_database_costs_a_reread_only(course):
    config, c1, bucket, repo = course
    good = sync_course(config, c1).commit
    StateStore.for_course(config, "c1").path.write_bytes(b"not a database at all" * 100)
    opens = bucket.opens
    result = sync_course(config, c1)
    assert result.ok and not result.changed and repo.head() == good
    assert bucket.opens == opens + len(bucket.files)
    assert StateStore.for_course(config, "c1").read().commit == good


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


@pytest.mark.parametrize("said", [None, 5, 11, 999])
def test_a_spooled_body_has_its_git_blob_id_whatever_size_the_source_said(said, tmp_path):
    body = b"hello world"
    expected = subprocess.run(["git", "hash-object", "--stdin"], input=body, check=True,
                              capture_output=True).stdout.decode().strip()
    with Spool(io.BytesIO(body), 100, said, tmp_path) as spool:
        assert (spool.blob, spool.size, spool.file.read()) == (expected, len(body), body)
    with Spool(io.BytesIO(body), 10, said, tmp_path) as spool:
        assert spool.too_large


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
    leftovers = [repo.path / "refs/heads/main.lock", repo.path / "refs/f2git/incoming.lock",
                 repo.path / "packed-refs.lock", repo.path / "objects/pack/tmp_pack_AbC123",
                 repo.path / "f2git-marks-x1y2", repo.path / "f2git-spool-abc"]
    for leftover in leftovers:
        leftover.write_bytes(b"0" * 41)
    pack = next((repo.path / "objects" / "pack").glob("*.pack"))
    leftovers.append(pack.with_suffix(".keep"))  # a fast-import killed before it dropped its mark
    leftovers[-1].write_bytes(b"fast-import\n")
    git(repo, "update-ref", "refs/f2git/incoming/dead/main", repo.head())
    bucket.files["after-crash.txt"] = b"arrives"
    result = sync_course(config, c1)
    assert result.ok and result.added == 1, result.error
    assert not [p for p in leftovers if p.exists()]
    assert git(repo, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/main"]
    fsck_clean(repo)


def test_a_big_file_is_written_once_and_kept_out_of_later_repacks(make_config, tmp_path):
    """A file past BIG_FILE streams into its own kept pack: byte-exact, never rewritten by the
    repacks of later small syncs, and fast-import leaves no loose objects to compress again."""
    source = tmp_path / "source"
    (source / "data").mkdir(parents=True)
    big = os.urandom(BIG_FILE // 2) + b"text " * (BIG_FILE // 5 + 4096)
    (source / "data" / "big.bin").write_bytes(big)
    (source / "notes.md").write_text("v0\n")
    config = make_config({"s": {"source": "local", "path": str(source)}})
    repo = CourseRepo.for_course(config, "s")
    assert sync_course(config, config.courses["s"]).ok
    kept = list((repo.path / "objects" / "pack").glob("*.keep"))
    assert len(kept) == 1
    pack = kept[0].with_suffix(".pack")
    before = pack.stat()
    blob = repo.files(repo.head())["data/big.bin"]
    assert git(repo, "cat-file", "-s", blob).strip() == str(len(big))
    assert subprocess.run(["git", "--git-dir", str(repo.path), "cat-file", "blob", blob],
                          check=True, capture_output=True).stdout == big
    for round_ in range(1, 4):
        (source / "notes.md").write_text(f"v{round_}\n")
        os.utime(source / "notes.md", ns=(time.time_ns() + round_ * 10**9,) * 2)
        assert sync_course(config, config.courses["s"]).modified == 1
    after = pack.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    counts = dict(line.split(": ") for line in git(repo, "count-objects", "-v").splitlines())
    assert counts["count"] == "0"  # nothing loose: every sync's objects went straight into a pack
    assert len(list((repo.path / "objects" / "pack").glob("*.pack"))) <= 3  # small packs were folded
    fsck_clean(repo)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", f"file://{repo.path}", str(clone)], check=True, capture_output=True)
    assert (clone / "data" / "big.bin").read_bytes() == big and (clone / "notes.md").read_text() == "v3\n"
