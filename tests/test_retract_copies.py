"""Retract beside a running sync, and everywhere else the history was kept: the backup and the
mirror. In process, with the memory source (a gated one for the race) and a real git host."""
from __future__ import annotations

import threading

import connectors
import pytest

from f2git import release
from f2git.snapshot import sync_course
from f2git.store import CourseRepo
from tests import fakesource
from tests.hubhelpers import GitHost
from tests.repohelpers import git, machine_git_config_ignored  # noqa: F401 (autouse)

SECRET = b"EXAM-SOLUTIONS-91c2"
LEAK = "solutions/exam.ipynb"
MIRROR_TOKEN = "mirror-tok-Rq3-distinctive"


def has_object(path, oid: str) -> bool:
    return git("--git-dir", str(path), "cat-file", "-e", oid, check=False).returncode == 0


def held_commits(path) -> list[str]:
    return git("--git-dir", str(path), "rev-list", "main").stdout.decode().split()


@pytest.fixture
def gated(monkeypatch, memory_source, request):
    monkeypatch.setitem(connectors.SOURCES, "gated", "tests.fakesource:GatedConnector")
    name = f"retract-{request.node.name}"
    bucket = memory_source(name, {"README.md": b"# CS 101\n", LEAK: SECRET})
    fakesource.GATES[name] = gate = fakesource.Gate()
    gate.open()
    yield name, bucket, gate
    gate.open()
    fakesource.GATES.pop(name, None)


def test_a_retract_racing_a_sync_waits_for_it_and_the_file_stays_out(gated, make_config):
    name, bucket, gate = gated
    config = make_config({"cs101": {"source": "gated", "bucket": name}})
    course = config.courses["cs101"]
    assert sync_course(config, course).ok
    bucket.files["week2.md"] = b"next\n"
    gate.close()
    outcome: dict = {}
    syncing = threading.Thread(target=lambda: outcome.update(sync=sync_course(config, course)))
    syncing.start()
    assert gate.reached.wait(10)  # the sync holds the course lock, listing a slow source
    retracting = threading.Thread(target=lambda: outcome.update(retract=release.retract(config, course, [LEAK])))
    retracting.start()
    retracting.join(1.0)
    assert retracting.is_alive()  # it waits for the sync instead of rewriting under it
    gate.open()
    syncing.join(30)
    retracting.join(30)
    assert outcome["sync"].ok and outcome["sync"].added == 1
    repo = CourseRepo.for_course(config, "cs101")
    assert outcome["retract"].commit == repo.head() and set(repo.files(repo.head())) == {"README.md", "week2.md"}
    for commit in held_commits(repo.path):  # no snapshot holds it, the one the sync wrote included
        assert LEAK not in repo.files(commit)
    # the sync after it, with the source still offering the file, leaves it out
    again = sync_course(config, course)
    assert again.ok and not again.changed and again.held == [LEAK]


def test_a_retract_that_cannot_get_the_lock_says_so(gated, make_config):
    name, bucket, gate = gated
    config = make_config({"cs101": {"source": "gated", "bucket": name}})
    course = config.courses["cs101"]
    assert sync_course(config, course).ok
    gate.close()
    syncing = threading.Thread(target=sync_course, args=(config, course))
    syncing.start()
    assert gate.reached.wait(10)
    with pytest.raises(release.ReleaseError, match="a sync of this course is still running") as refused:
        release.retract(config, course, [LEAK], timeout=0.2)
    assert refused.value.status == 409
    gate.open()
    syncing.join(30)


def test_the_backup_and_the_mirror_are_rewritten_too(memory_source, make_config, tmp_path, monkeypatch):
    monkeypatch.setenv("MIRROR_TOKEN", MIRROR_TOKEN)
    bucket = memory_source("copies", {"README.md": b"# CS 101\n"})
    with GitHost(tmp_path / "host", token=MIRROR_TOKEN) as host:
        host.create("cs101")
        config = make_config({"cs101": {"source": "memory", "bucket": "copies", "mirror": host.url("cs101"),
                                        "mirror_token_env": "MIRROR_TOKEN"}},
                             server={"backup_dir": str(tmp_path / "backup")}, env={"MIRROR_TOKEN": MIRROR_TOKEN})
        course = config.courses["cs101"]
        assert sync_course(config, course).ok
        bucket.files[LEAK] = SECRET
        leaked = sync_course(config, course)
        assert leaked.ok and leaked.mirror_error is None
        repo = CourseRepo.for_course(config, "cs101")
        blob = repo.files(leaked.commit)[LEAK]
        backup, mirror = tmp_path / "backup" / "cs101.git", host.root / "cs101.git"
        assert has_object(backup, blob) and has_object(mirror, blob)

        result = release.retract(config, course, [LEAK], reason="too early", who="ana")

        assert result.backup_error is None and result.mirror_error is None
        assert held_commits(backup) == held_commits(repo.path) == held_commits(mirror)
        assert not has_object(backup, blob)  # f2git's own backup is purged as well
        assert not has_object(repo.path, blob)
        # the next snapshots go on fast-forward to both
        bucket.files["week2.md"] = b"next\n"
        after = sync_course(config, course)
        assert after.ok and after.mirror_error is None
        assert held_commits(backup) == held_commits(repo.path) == held_commits(mirror)


def test_a_mirror_that_moved_on_its_own_is_not_overwritten_by_a_retract(memory_source, make_config, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("MIRROR_TOKEN", MIRROR_TOKEN)
    bucket = memory_source("lease", {"README.md": b"# CS 101\n", LEAK: SECRET})
    with GitHost(tmp_path / "host", token=MIRROR_TOKEN) as host:
        host.create("cs101")
        config = make_config({"cs101": {"source": "memory", "bucket": "lease", "mirror": host.url("cs101"),
                                        "mirror_token_env": "MIRROR_TOKEN"}}, env={"MIRROR_TOKEN": MIRROR_TOKEN})
        course = config.courses["cs101"]
        assert sync_course(config, course).ok
        mirror = host.root / "cs101.git"
        # someone pushed to the mirror behind f2git's back
        work = tmp_path / "work"
        git("clone", "-q", str(mirror), work)
        (work / "theirs.txt").write_text("theirs\n")
        git("add", "theirs.txt", cwd=work)
        git("commit", "-qm", "theirs", cwd=work)
        git("push", "-q", "origin", "HEAD:main", cwd=work)
        theirs = held_commits(mirror)[0]
        result = release.retract(config, course, [LEAK])
        assert result.mirror_error and "was not rewritten" in result.mirror_error
        assert MIRROR_TOKEN not in result.mirror_error
        assert held_commits(mirror)[0] == theirs
