"""A server's re-sync of a local folder costs what changed (issue 14.5): the change journal
(inotify on this machine's own file system) names the files to look at again, and the engine
updates its remembered selection and state instead of listing, selecting and planning the
whole tree. The promise that matters more: the snapshot is always exactly the one a whole
listing gives. Every test here compares with that oracle, and checks the fast path was taken,
so neither a wrong snapshot nor a silently slow one passes.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import Entry, Listing, Skipped, SourceError, _journal
from connectors.local import LocalConnector
from f2git.selection import Selection
from f2git.snapshot import sync_course
from f2git.store import CourseRepo
from tests.repocheck import fsck_clean

pytestmark = pytest.mark.skipif(_journal.INotify is None, reason="inotify is Linux's")


class WholeListings(LocalConnector):
    """The oracle: every sync lists the whole folder and keeps nothing, as before the journal."""

    def list(self, state):
        listing = super().list(state)
        listing.follow_up, listing.state = False, {}
        return listing


@pytest.fixture
def full_listings(monkeypatch):
    """Counts the whole listings of the course under test ("live")."""
    counted = {"live": 0}
    whole = LocalConnector.list

    def counting(self, state):
        if self.course == "live":
            counted["live"] += 1
        return whole(self, state)

    monkeypatch.setattr(LocalConnector, "list", counting)
    return counted


@pytest.fixture
def pair(tmp_path, make_config):
    """One folder, two courses: "live" syncs as a server does, "truth" with whole listings."""
    source = tmp_path / "source"
    source.mkdir()
    keys = {"source": "local", "path": str(source), "schedule": 0, "max_file_size": 4000}
    config = make_config({"live": dict(keys), "truth": dict(keys)})

    def sync_both():
        live = sync_course(config, config.courses["live"])
        truth = sync_course(config, config.courses["truth"],
                            connector=WholeListings(config.courses["truth"].options, course="truth"))
        assert live.ok, live.error
        assert truth.ok, truth.error
        assert snapshot_of(config, "live") == snapshot_of(config, "truth")
        assert sorted(map(tuple_of, live.skipped)) == sorted(map(tuple_of, truth.skipped))
        return live

    return config, source, sync_both


def snapshot_of(config, name: str) -> dict[str, str]:
    repo = CourseRepo.for_course(config, name)
    return repo.files(repo.head())


def tuple_of(skip: Skipped) -> tuple[str, str]:
    return skip.path, skip.reason


def edit(path: Path, text: str) -> None:
    """Write new content and move mtime on, as a real edit seconds later would."""
    path.write_text(text)
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))


def test_a_resync_reads_only_the_file_an_event_named(pair, full_listings, monkeypatch):
    config, source, sync_both = pair
    for i in range(300):
        (source / f"week{i % 10}").mkdir(exist_ok=True)
        (source / f"week{i % 10}" / f"n{i}.md").write_text(f"note {i}\n")
    sync_both()
    opened = []
    real_open = LocalConnector.open
    monkeypatch.setattr(LocalConnector, "open",
                        lambda self, entry: opened.append((self.course, entry.path)) or real_open(self, entry))
    edit(source / "week3" / "n13.md", "note 13, corrected\n")
    result = sync_both()
    assert (result.added, result.modified, result.deleted) == (0, 1, 0)
    assert full_listings["live"] == 1, "the re-sync listed the whole folder"
    assert [path for course, path in opened if course == "live"] == ["week3/n13.md"]
    fsck_clean(CourseRepo.for_course(config, "live"))


def test_random_edits_give_exactly_the_snapshot_a_whole_listing_gives(pair, full_listings, tmp_path):
    """Edits, renames, deletions, links, twins in letter case, file-folder clashes, files too
    large, debris, folders coming and going: after every round the two snapshots are equal."""
    config, source, sync_both = pair
    secret = tmp_path / "secret.txt"
    secret.write_text("not for students\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    chance = random.Random(1414)
    names = ["a.md", "A.md", "b.ipynb", "data", "Data", "notes.txt", ".git", "x y.csv", "é.md"]
    folders = ["", "week1/", "week2/", "week2/sub/"]
    for folder in folders:
        (source / folder).mkdir(parents=True, exist_ok=True)
    for i in range(40):
        made = source / chance.choice(folders) / f"f{i}.txt"
        made.write_text(f"file {i}\n")
        if i % 8 == 0:  # also known under a name outside the folder, which no watch sees
            os.link(made, outside / f"h{i}")

    def files() -> list[Path]:
        return sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink())

    def step() -> None:
        kind = chance.choice(["edit"] * 6 + ["new"] * 4 + ["delete"] * 3 + ["rename"] * 2 + [
            "link", "big", "debris", "chmod", "truncate", "folder", "rmfolder", "clash"])
        present = files()
        target = chance.choice(present) if present else None
        if kind == "edit" and target:
            edit(target, f"edited {chance.random()}\n")
        elif kind == "new":
            path = source / chance.choice(folders) / chance.choice(names)
            if not path.is_dir():
                path.unlink(missing_ok=True)
                edit(path, f"new {chance.random()}\n")
        elif kind == "delete" and target:
            target.unlink()
        elif kind == "rename" and target:
            target.rename(source / chance.choice(folders) / f"moved{chance.randrange(1000)}.txt")
        elif kind == "link" and target:
            target.unlink()
            target.symlink_to(secret)
        elif kind == "big":
            (source / chance.choice(folders) / "big.bin").write_bytes(os.urandom(5000))
        elif kind == "debris":
            (source / "week1" / ".ipynb_checkpoints").mkdir(exist_ok=True)
            edit(source / "week1" / ".ipynb_checkpoints" / "f-checkpoint.txt", "debris\n")
        elif kind == "chmod" and target:
            target.chmod(0o600 if target.stat().st_mode & 0o044 else 0o644)
        elif kind == "truncate" and target:
            target.write_bytes(b"")
        elif kind == "folder":
            fresh = source / chance.choice(folders) / f"topic{chance.randrange(5)}"
            fresh.mkdir(exist_ok=True)
            edit(fresh / "intro.md", "intro\n")
        elif kind == "rmfolder":
            topics = [p for p in source.rglob("topic*") if p.is_dir()]
            if topics:
                shutil.rmtree(chance.choice(topics))
        elif kind == "clash":  # a file where another name needs a folder, in another letter case
            edit(source / "WEEK2", "a file named like a folder\n")
        # an edit through a hard link outside the folder: no watch sees it
        linked = sorted(outside.iterdir())
        if linked and chance.random() < 0.3:
            edit(chance.choice(linked), f"edited outside {chance.random()}\n")

    sync_both()
    rounds = 60
    for _ in range(rounds):
        for _ in range(chance.randint(1, 3)):
            step()
        sync_both()
    # Folders coming and going need whole listings; most rounds must not.
    assert full_listings["live"] < rounds // 2, full_listings
    fsck_clean(CourseRepo.for_course(config, "live"))


def test_lost_events_mean_a_whole_listing(pair, full_listings):
    config, source, sync_both = pair
    for name in ("a.txt", "b.txt", "c.txt"):
        (source / name).write_text(name)
    sync_both()
    queue = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    for i in range(queue + 100):  # alternate names: the kernel merges only identical events
        os.utime(source / ("a.txt" if i % 2 else "b.txt"))
    edit(source / "c.txt", "changed after the overflow\n")
    result = sync_both()
    assert result.modified == 1
    assert full_listings["live"] == 2


def test_a_file_edited_through_another_link_arrives(pair, full_listings, tmp_path):
    config, source, sync_both = pair
    (source / "shared.txt").write_text("first\n")
    os.link(source / "shared.txt", tmp_path / "elsewhere.txt")
    sync_both()
    edit(tmp_path / "elsewhere.txt", "second, written under the other name\n")
    result = sync_both()
    assert result.modified == 1
    assert full_listings["live"] == 1  # re-read because of its links, not by a fallback


def synced_then_edited(pair, edited: str) -> None:
    """a.txt and b.txt synced, then a.txt edited."""
    config, source, sync_both = pair
    (source / "a.txt").write_text("a\n")
    (source / "b.txt").write_text("b\n")
    sync_both()
    edit(source / "a.txt", edited)


def test_a_failed_resync_leaves_the_change_for_the_next(pair, full_listings, monkeypatch):
    config, source, sync_both = pair
    synced_then_edited(pair, "a, changed\n")
    real_open = LocalConnector.open

    def failing(self, entry):
        raise SourceError("the disk went away")

    monkeypatch.setattr(LocalConnector, "open", failing)
    assert not sync_course(config, config.courses["live"]).ok
    monkeypatch.setattr(LocalConnector, "open", real_open)
    result = sync_both()
    assert result.modified == 1


def test_a_sync_by_another_process_in_between_is_not_overlooked(pair, full_listings, tmp_path):
    config, source, sync_both = pair
    synced_then_edited(pair, "a, synced by the CLI\n")
    config_file = tmp_path / "f2git.toml"
    config_file.write_text(f'[server]\ndata_dir = "{config.server.data_dir}"\n'
                           f'[courses.live]\nsource = "local"\npath = "{source}"\nmax_file_size = 4000\n')
    subprocess.run([sys.executable, "-m", "f2git.cli", "--config", str(config_file), "sync", "live"],
                   check=True, capture_output=True)
    edit(source / "b.txt", "b, synced by the server\n")
    sync_both()
    repo = CourseRepo.for_course(config, "live")
    assert len(repo.log()) == 3


def test_a_folder_that_may_change_elsewhere_gets_no_journal(pair, full_listings, monkeypatch):
    config, source, sync_both = pair
    monkeypatch.setattr(_journal, "_file_system_types", lambda: {})  # e.g. NFS: unknown here
    (source / "a.txt").write_text("a\n")
    sync_both()
    edit(source / "a.txt", "a, changed on another machine\n")
    assert sync_both().modified == 1
    assert full_listings["live"] == 2


def test_a_journal_answers_for_a_while_then_a_whole_listing_checks_everything(pair, full_listings, monkeypatch):
    config, source, sync_both = pair
    (source / "a.txt").write_text("a\n")
    sync_both()
    edit(source / "a.txt", "a, 2\n")
    sync_both()
    assert full_listings["live"] == 1
    monkeypatch.setattr(_journal, "FULL_LISTING_EVERY", 0.0)
    edit(source / "a.txt", "a, 3\n")
    sync_both()
    assert full_listings["live"] == 2


def test_a_mass_delete_seen_by_the_journal_is_refused_like_any_other(pair, full_listings):
    config, source, sync_both = pair
    for i in range(20):
        (source / f"f{i}.txt").write_text(f"{i}\n")
    first = sync_both()
    for i in range(15):
        (source / f"f{i}.txt").unlink()
    refused = sync_course(config, config.courses["live"])
    assert not refused.ok and refused.mass_delete_refused == 15
    assert CourseRepo.for_course(config, "live").head() == first.commit
    allowed = sync_course(config, config.courses["live"], allow_mass_delete=True)
    assert allowed.ok and allowed.deleted == 15
    assert sorted(snapshot_of(config, "live")) == [f"f{i}.txt" for i in range(15, 20)]


# The incremental selection alone, against deciding the whole listing anew.
NAME = st.sampled_from(["a", "A", "b", "a/b", "A/b", "a/b/c", "b/a", "x.md", "X.MD", "x.md/y",
                        ".git", "a/.git/config", "d/e", "D/E/f", "e.txt", "big"])


def entry(path: str, version: int) -> Entry:
    return Entry(path, 9000 if path == "big" else 10, f"v{version}")


@settings(max_examples=300, deadline=None)
@given(first=st.sets(NAME), rounds=st.lists(st.dictionaries(NAME, st.sampled_from(["file", "gone", "link"])),
                                            max_size=6))
def test_applying_changes_selects_what_deciding_the_whole_listing_selects(first, rounds):
    course = SimpleNamespace(include=["**"], exclude=["**/*.md"], max_file_size=100)
    listed: dict[str, Entry | Skipped] = {path: entry(path, 0) for path in first}
    kept = Selection(course)

    def split(items):
        items = list(items)
        return ([item for item in items if isinstance(item, Entry)],
                [item for item in items if isinstance(item, Skipped)])

    kept.decide(*split(listed.values()))
    assert kept.follow(Listing(*split(listed.values())))
    for number, changes in enumerate(rounds, 1):
        for path, what in changes.items():
            listed.pop(path, None)
            if what == "file":
                listed[path] = entry(path, number)
            elif what == "link":
                listed[path] = Skipped(path, "not a regular file (links are not followed)")
        entries, skipped = split(listed[path] for path in changes if path in listed)
        before = dict(kept.wanted)
        candidates = kept.apply(Listing(entries, skipped, touched=set(changes)))
        fresh = Selection(course)
        fresh.decide(*split(listed.values()))
        assert kept.wanted == fresh.wanted
        assert sorted(map(tuple_of, kept.skipped)) == sorted(map(tuple_of, fresh.skipped))
        if candidates is not None:  # every path whose place in the snapshot changed is a candidate
            moved = {path for path in before.keys() | kept.wanted.keys() if before.get(path) != kept.wanted.get(path)}
            assert moved <= candidates


def test_a_journal_evicted_while_its_folder_is_walked_costs_a_whole_listing_not_a_failure(pair, monkeypatch):
    """Many courses syncing at once evict the oldest journals, maybe one still being built."""
    config, source, sync_both = pair
    for name in ("a", "b"):
        (source / name).mkdir()
        (source / name / "f.txt").write_text(name)
    watch = _journal.Journal.watch

    def evicted_midway(self, folder_fd, prefix):
        if prefix:  # the root is watched; then other courses' journals push this one out
            self.close()
        return watch(self, folder_fd, prefix)

    monkeypatch.setattr(_journal.Journal, "watch", evicted_midway)
    result = sync_both()
    assert result.added == 2
    monkeypatch.setattr(_journal.Journal, "watch", watch)
    edit(source / "a" / "f.txt", "a, changed\n")
    assert sync_both().modified == 1


def test_a_folder_written_all_the_time_gets_every_snapshot(pair):
    """An instructor's script rewrites files while syncs run (delete and create, atomic
    replace, in place): no sync fails, the first one included, and once the writing stops
    the snapshot is exactly the folder's."""
    config, source, sync_both = pair
    for folder in range(4):
        (source / f"d{folder}").mkdir()
        for number in range(150):
            (source / f"d{folder}" / f"f{number}.txt").write_text(f"{folder} {number}\n")
    stop = threading.Event()
    chance = random.Random(5)

    def write() -> None:
        count = 0
        while not stop.is_set():
            path = source / f"d{chance.randrange(4)}" / f"f{chance.randrange(160)}.txt"
            how = chance.random()
            if how < 0.4:
                path.unlink(missing_ok=True)
                path.write_text(f"recreated {count}\n")
            elif how < 0.8:
                aside = path.with_name(f".{path.name}.{count}")
                aside.write_text(f"replaced {count}\n" * chance.randrange(1, 20))
                os.replace(aside, path)
            else:
                path.write_text(f"in place {count}\n")
            count += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        results = [sync_course(config, config.courses["live"]) for _ in range(25)]
    finally:
        stop.set()
        writer.join()
    assert [result.error for result in results if not result.ok] == []
    sync_both()  # after the writing: equal to the whole listing's snapshot
    fsck_clean(CourseRepo.for_course(config, "live"))


def test_a_file_gone_between_being_seen_and_looked_at_keeps_its_last_version(pair, monkeypatch):
    config, source, sync_both = pair
    (source / "a.txt").write_text("a\n")
    (source / "b.txt").write_text("b\n")
    real_stat = os.stat

    def vanishing(name, *args, **kwargs):  # b.txt is deleted and written anew just now
        if name == "b.txt" and kwargs.get("dir_fd") is not None:
            raise FileNotFoundError(2, "No such file or directory")
        return real_stat(name, *args, **kwargs)

    monkeypatch.setattr("connectors.local.os.stat", vanishing)
    first = sync_course(config, config.courses["live"])
    assert first.ok and "removed while the sync ran: the next sync looks again" in \
        {skip.path: skip.reason for skip in first.skipped}["b.txt"]
    assert sorted(snapshot_of(config, "live")) == ["a.txt"]
    monkeypatch.setattr("connectors.local.os.stat", real_stat)
    sync_both()
    edit(source / "b.txt", "b, rewritten\n")
    monkeypatch.setattr("connectors.local.os.stat", vanishing)
    monkeypatch.setattr(_journal, "FULL_LISTING_EVERY", 0.0)  # a whole listing sees it vanish
    kept = sync_course(config, config.courses["live"])
    assert kept.ok and "keep its last version" in {skip.path: skip.reason for skip in kept.skipped}["b.txt"]
    assert snapshot_of(config, "live") == snapshot_of(config, "truth")  # b.txt as it was
    monkeypatch.setattr("connectors.local.os.stat", real_stat)
    assert sync_both().modified == 1
