"""f2git 0.1 kept each course's sync state in the served repo (a parentless commit under the
hidden ref refs/f2git/state, and every older one as an unreachable object). Under protocol v2
upload-pack serves any object named by id, hidden or not: the first sync of a 0.1 repo moves
the state out and purges it, and from then on nothing of it can be fetched or cloned."""
from __future__ import annotations

import json

import pytest

from f2git.snapshot import sync_course
from f2git.store import CourseRepo
from f2git.syncstate import StateStore
from tests.repohelpers import git, machine_git_config_ignored  # noqa: F401 (autouse fixture)
from tests.serverhelpers import RunningServer, config_factory

MARKER = b"exam-solutions-unreleased.ipynb"  # what a state can name that students must not read


def commit_state(repo: CourseRepo, state: dict) -> str:
    """A state commit exactly as f2git 0.1 wrote it: state.json in a parentless commit."""
    blob = git("--git-dir", repo.path, "hash-object", "-w", "--stdin", input=json.dumps(state).encode())
    tree = git("--git-dir", repo.path, "mktree", input=b"100644 blob %s\tstate.json\n" % blob.stdout.strip())
    commit = git("--git-dir", repo.path, "commit-tree", tree.stdout.decode().strip(), "-m", "f2git sync state")
    return commit.stdout.decode().strip()


def make_legacy(config, name: str) -> tuple[str, str]:
    """Turn a synced course into the layout f2git 0.1 left: returns (current, older) state commits."""
    repo, store = CourseRepo.for_course(config, name), StateStore.for_course(config, name)
    state = store.read()
    files = {path: {"version": row.version, "blob": row.blob} for path, row in state.files.items()}
    older = commit_state(repo, {"commit": None, "files": {}, "source": {"etag": MARKER.decode()}})
    git("--git-dir", repo.path, "update-ref", "refs/f2git/state", older)
    git("--git-dir", repo.path, "repack", "-d", "-q")  # 0.1 repacked after each sync
    current = commit_state(repo, {"commit": state.commit, "files": files, "source": {"seen": MARKER.decode()},
                                  "next_release": None})
    git("--git-dir", repo.path, "update-ref", "refs/f2git/state", current)
    git("--git-dir", repo.path, "repack", "-d", "-q")
    store.path.unlink()
    return current, older


def fetch_by_id(url: str, oid: str, version: str, into) -> bool:
    into.mkdir(exist_ok=True)
    git("init", "-q", into)
    fetched = git("-C", into, "-c", f"protocol.version={version}", "fetch", "-q", url, oid, check=False)
    return fetched.returncode == 0


def objects_of(folder) -> bytes:
    """Every object in a clone, contents included."""
    return git("-C", folder, "cat-file", "--batch-all-objects", "--batch", "--unordered").stdout


@pytest.fixture
def legacy(tmp_path, memory_source):
    bucket = memory_source("legacy", {"README.md": b"# Course\n", "week1/a.ipynb": b"{}"})
    make = config_factory(tmp_path, {"legacy": {"source": "memory", "bucket": "legacy", "schedule": 0}},
                          refresh_ttl=3600)
    config = make(1)  # the same data dir as the server's; the port does not matter here
    assert sync_course(config, config.courses["legacy"]).ok
    return make, config, bucket, make_legacy(config, "legacy")


def test_the_old_state_cannot_be_fetched_by_id_or_cloned_after_the_first_sync(legacy, tmp_path):
    make, config, bucket, (current, older) = legacy
    repo = CourseRepo.for_course(config, "legacy")
    with RunningServer(make) as server:
        url = server.git_url("legacy")
        # The attack on the old layout (protocol v2 handed out the hidden state to whoever named
        # its id) is refused by the server even before the first sync purges the state: only
        # commits of main's history may be wanted (f2git/server/git.py).
        assert not fetch_by_id(url, current, "2", tmp_path / "before")

        opens = bucket.opens
        migrated = sync_course(config, config.courses["legacy"])
        assert migrated.ok and not migrated.changed
        assert bucket.opens == opens  # the old state was carried over: nothing re-read

        for version in ("0", "2"):
            for oid in (current, older):
                assert not fetch_by_id(url, oid, version, tmp_path / f"after-{version}-{oid[:7]}"), (version, oid)
            clone = tmp_path / f"clone-{version}"
            git("-c", f"protocol.version={version}", "clone", "-q", url, clone)
            assert MARKER not in objects_of(clone)
            assert (clone / "README.md").read_bytes() == b"# Course\n"
    assert git("--git-dir", repo.path, "for-each-ref", "--format=%(refname)").stdout.split() == [b"refs/heads/main"]
    for oid in (current, older):
        assert git("--git-dir", repo.path, "cat-file", "-e", oid, check=False).returncode != 0
    state = StateStore.for_course(config, "legacy").read()
    assert state.commit == repo.head() and not state.legacy
    assert {path: row.blob for path, row in state.files.items()} == repo.files(repo.head())
    git("--git-dir", repo.path, "fsck", "--strict", "--no-dangling")


def test_a_preview_reads_the_old_state_and_changes_nothing(legacy):
    make, config, bucket, (current, older) = legacy
    repo = CourseRepo.for_course(config, "legacy")
    bucket.files["new.txt"] = b"new"
    plan = sync_course(config, config.courses["legacy"], dry_run=True)
    assert plan.ok and plan.paths == {"added": ["new.txt"], "modified": [], "deleted": []}
    assert git("--git-dir", repo.path, "rev-parse", "refs/f2git/state").stdout.decode().strip() == current
    assert not StateStore.for_course(config, "legacy").path.exists()


def test_a_migration_cut_short_is_finished_by_the_next_sync(legacy, monkeypatch):
    make, config, bucket, (current, older) = legacy
    repo = CourseRepo.for_course(config, "legacy")
    with pytest.MonkeyPatch.context() as patch:
        def killed(self):
            git("--git-dir", self.path, "update-ref", "-d", "refs/f2git/state")
            raise OSError("killed after deleting the ref, before the repack")
        patch.setattr(CourseRepo, "purge_legacy_state", killed)
        assert not sync_course(config, config.courses["legacy"]).ok
    assert git("--git-dir", repo.path, "cat-file", "-e", current, check=False).returncode == 0  # still there
    opens = bucket.opens
    assert sync_course(config, config.courses["legacy"]).ok
    assert bucket.opens == opens
    for oid in (current, older):
        assert git("--git-dir", repo.path, "cat-file", "-e", oid, check=False).returncode != 0
    assert not StateStore.for_course(config, "legacy").read().legacy
