"""Restore trusts nothing blindly: a backup or mirror that someone else pushed to is checked like
f2git's own snapshots (fsck --strict, f2git's path rules, f2git's commits) before it is served.

The attacker here can push to the mirror (or write backup_dir): they add a commit with a
`.Git/` folder, a hostile `.gitmodules` and a file never released, then data_dir is lost.
"""
from __future__ import annotations

import logging
import shutil

import pytest

from f2git.backup import backup_path
from f2git.config import parse
from f2git.historycheck import UntrustedHistory, verify
from f2git.snapshot import sync_course
from f2git.store import CourseRepo
from tests.hubhelpers import GitHost
from tests.repohelpers import git, git_environ, machine_git_config_ignored  # noqa: F401 (autouse)
from tests.serverhelpers import RunningServer, config_factory

COURSE = "cs101"
MIRROR_TOKEN = "mirror-tok-R5t-distinctive"
SECRET_FILE = "exam-solutions.ipynb"
F2GIT = {"GIT_AUTHOR_NAME": "f2git", "GIT_AUTHOR_EMAIL": "f2git@localhost",
         "GIT_COMMITTER_NAME": "f2git", "GIT_COMMITTER_EMAIL": "f2git@localhost"}


def blob(repo, data: bytes) -> str:
    return git("hash-object", "-w", "--stdin", cwd=repo, input=data).stdout.decode().strip()


def tree(repo, entries: list[tuple[str, str, str]]) -> str:
    kinds = {"040000": "tree", "160000": "commit"}
    lines = "".join(f"{mode} {kinds.get(mode, 'blob')} {oid}\t{name}\n" for mode, name, oid in entries)
    return git("mktree", cwd=repo, input=lines.encode()).stdout.decode().strip()


def hostile_commit(repo, *, dot_git=True, gitmodules=True, identity=None) -> str:
    """A commit on top of `main` adding what an attacker wants every student's clone to hold."""
    parent = git("rev-parse", "main", cwd=repo).stdout.decode().strip()
    entries = []
    for line in git("ls-tree", "main", cwd=repo).stdout.decode().splitlines():
        meta, name = line.split("\t", 1)
        mode, _, oid = meta.split()
        entries.append((mode, name, oid))
    entries.append(("100644", SECRET_FILE, blob(repo, b'{"answers": 42}\n')))
    if dot_git:
        hooks = tree(repo, [("100755", "post-checkout", blob(repo, b"#!/bin/sh\ntouch /tmp/pwned\n"))])
        entries.append(("040000", ".Git", tree(repo, [("040000", "hooks", hooks),
                                                      ("100644", "config", blob(repo, b"[core]\n"))])))
    if gitmodules:
        entries.append(("100644", ".gitmodules", blob(repo, b'[submodule "x"]\n\tpath = x\n'
                                                            b'\turl = --upload-pack=touch${IFS}/tmp/pwned\n')))
    env = {**git_environ(), **(identity or {})}
    root = tree(repo, entries)
    commit = git("commit-tree", root, "-p", parent, "-m", "Update files", cwd=repo, env=env).stdout.decode().strip()
    git("update-ref", "refs/heads/main", commit, parent, cwd=repo)
    return commit


def history_paths(repo) -> set[str]:
    listed = git("log", "--format=", "--name-only", "main", cwd=repo).stdout.decode()
    return {line for line in listed.splitlines() if line}


def test_a_tampered_mirror_is_refused_the_course_starts_anew_and_says_why(tmp_path, memory_source, monkeypatch,
                                                                         caplog):
    bucket = memory_source("mirrored", {"README.md": b"# CS 101\n"})
    monkeypatch.setenv("MIRROR_TOKEN", MIRROR_TOKEN)
    with GitHost(tmp_path / "host", token=MIRROR_TOKEN, public_read=True) as host:
        mirror = host.create(COURSE)
        courses = {COURSE: {"source": "memory", "bucket": "mirrored", "schedule": 0, "mirror": host.url(COURSE),
                            "mirror_token_env": "MIRROR_TOKEN"}}
        make = config_factory(tmp_path, courses, env={"MIRROR_TOKEN": MIRROR_TOKEN}, refresh_ttl=0)
        with RunningServer(make) as server:
            code, first = server.post_json(f"/api/courses/{COURSE}/refresh")
            assert first["ok"] and not first.get("mirror_error"), first

            hostile_commit(mirror)  # someone with push rights to the mirror
            shutil.rmtree(tmp_path / "data")  # and the disk is lost
            bucket.files["week1/intro.md"] = b"hello\n"
            with caplog.at_level(logging.ERROR, logger="f2git.backup"):
                code, second = server.post_json(f"/api/courses/{COURSE}/refresh")
            assert code == 200 and second["ok"], second
            assert "the history in its mirror was refused: git fsck failed" in second["backup_error"]
            assert "started a new history" in second["backup_error"]
            record = server.get_json(f"/api/courses/{COURSE}")
            assert record["backup_error"] == second["backup_error"]
            assert "its mirror was refused" in caplog.text and MIRROR_TOKEN not in caplog.text
            code, _, health = server.request("GET", "/healthz")
            assert code == 503 and b"was refused" in health

            served = CourseRepo.for_course(server.config, COURSE).path
            assert SECRET_FILE not in history_paths(served) and first["commit"] not in \
                git("rev-list", "main", cwd=served).stdout.decode()
            assert history_paths(served) == {"README.md", "week1/intro.md"}
            # a student's careful git takes what is served
            clone = git("-c", "transfer.fsckObjects=true", "clone", server.git_url(COURSE), tmp_path / "student")
            assert clone.returncode == 0 and not (tmp_path / "student" / SECRET_FILE).exists()


def backup_config(tmp_path):
    return parse({"server": {"data_dir": str(tmp_path / "data"), "backup_dir": str(tmp_path / "backup")},
                  "courses": {COURSE: {"source": "memory", "bucket": "b"}}}, tmp_path / "f2git.toml", {})


@pytest.mark.parametrize("tamper, says", [
    (dict(dot_git=True, gitmodules=False, identity=F2GIT), "git fsck failed"),
    (dict(dot_git=False, gitmodules=True, identity=F2GIT), "git fsck failed"),
    (dict(dot_git=False, gitmodules=False), "was not made by f2git"),
])
def test_a_tampered_backup_is_refused_whatever_was_added(tmp_path, memory_source, tamper, says):
    memory_source("b", {"README.md": b"# CS 101\n"})
    config = backup_config(tmp_path)
    course = config.courses[COURSE]
    first = sync_course(config, course)
    assert first.ok and not first.backup_error
    hostile_commit(backup_path(config, COURSE), **tamper)
    shutil.rmtree(tmp_path / "data")
    second = sync_course(config, course)
    assert second.ok and says in second.backup_error and "started a new history" in second.backup_error
    served = CourseRepo.for_course(config, COURSE).path
    assert SECRET_FILE not in history_paths(served)
    # the refused backup is left for the admin to look at, and every later backup says so
    third = sync_course(config, course)
    assert third.ok and "backup to" in third.backup_error


def test_f2git_paths_and_file_modes_are_checked_on_every_snapshot(tmp_path, memory_source):
    """A history with f2git's identity and a clean fsck can still hold a name f2git never writes."""
    memory_source("b", {"README.md": b"# CS 101\n"})
    config = backup_config(tmp_path)
    assert sync_course(config, config.courses[COURSE]).ok
    repo = backup_path(config, COURSE)
    verify(repo)  # f2git's own history passes
    parent = git("rev-parse", "main", cwd=repo).stdout.decode().strip()
    for mode, name, says in (("100644", "control\x7f.txt", "control character"), ("120000", "link", "mode 120000"),
                             ("100644", "a\u0308.txt", "not in the normal form"), ("160000", "sub", "mode 160000"),
                             ("100644", "GITMOD~1", "reserved git name")):
        root = tree(repo, [(mode, name, parent if mode == "160000" else blob(repo, b"x"))])
        commit = git("commit-tree", root, "-p", parent, "-m", "x", cwd=repo, env={**git_environ(), **F2GIT})
        git("update-ref", "refs/heads/main", commit.stdout.decode().strip(), cwd=repo)
        with pytest.raises(UntrustedHistory) as refused:
            verify(repo)
        assert says in str(refused.value)
        git("update-ref", "refs/heads/main", parent, cwd=repo)
