"""Losing data_dir does not strand students: a rebuilt course continues their history.

Real f2git server, real git, unmodified nbgitpuller: a student clones and edits, the data
directory is deleted, f2git starts again, and the student's next click merges cleanly —
from `backup_dir`, or from the course's mirror. Without either, the same click fails with
"refusing to merge unrelated histories": what this guards against.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from f2git.backup import backup_path
from f2git.config import ConfigError, parse
from f2git.snapshot import sync_course
from f2git.store import CourseRepo
from tests.hubhelpers import GitHost
from tests.repohelpers import SourceFolder, Student, git, machine_git_config_ignored  # noqa: F401 (autouse)
from tests.serverhelpers import RunningServer, config_factory

COURSE = "cs101"


def lose_data_dir_and_click_again(tmp_path, **server):
    instructor = SourceFolder(tmp_path / "released")
    instructor.write("README.md", "# CS 101\n")
    instructor.write("week1/intro.ipynb", '{"cells": []}\n')
    courses = {COURSE: {"source": "local", "path": str(instructor.path), "schedule": 0}}
    make = config_factory(tmp_path, courses, refresh_ttl=0, refresh_wait=30, **server)
    with RunningServer(make) as running:
        student = Student(running.git_url(COURSE), tmp_path / "student" / COURSE)
        student.click()
        first = CourseRepo.for_course(running.config, COURSE).head()
        student.write("week1/intro.ipynb", '{"cells": ["my answer"]}\n')  # the student works
        shutil.rmtree(tmp_path / "data")                                  # the disk is lost
        instructor.write("week2/loops.ipynb", "{}\n")                      # and the course goes on
        student.click()
        repo = CourseRepo.for_course(running.config, COURSE)
        history = git("rev-list", "main", cwd=repo.path).stdout.decode().split()
    return student, first, history


def test_a_lost_data_dir_is_rebuilt_from_the_backup_and_the_next_click_merges(tmp_path):
    student, first, history = lose_data_dir_and_click_again(tmp_path, backup_dir=str(tmp_path / "backup"))
    assert first in history, "the rebuilt course continues the history students have"
    assert student.read("week1/intro.ipynb") == '{"cells": ["my answer"]}\n'  # the edit is kept
    assert student.read("week2/loops.ipynb") == "{}\n"                         # the change arrives
    assert (tmp_path / "backup" / f"{COURSE}.git" / "HEAD").is_file()


def test_without_a_backup_the_next_click_fails_as_unrelated_histories(tmp_path):
    with pytest.raises(subprocess.CalledProcessError) as failed:
        lose_data_dir_and_click_again(tmp_path)
    assert "merge" in failed.value.cmd  # nbgitpuller's merge of the new snapshot
    merge = subprocess.run(["git", "merge", "origin/main"], cwd=tmp_path / "student" / COURSE,
                           capture_output=True, text=True)
    assert "refusing to merge unrelated histories" in merge.stderr


def test_a_lost_repo_is_restored_from_its_mirror(tmp_path, memory_source, monkeypatch):
    bucket = memory_source("mirrored", {"README.md": b"# CS 101\n"})
    with GitHost(tmp_path / "host", token="push-tok", public_read=True) as host:
        host.create(COURSE)
        config = parse({"server": {"data_dir": str(tmp_path / "data")},
                        "courses": {COURSE: {"source": "memory", "bucket": "mirrored", "mirror": host.url(COURSE),
                                             "mirror_token_env": "MIRROR_TOKEN"}}},
                       tmp_path / "f2git.toml", {"MIRROR_TOKEN": "push-tok"})
        course = config.courses[COURSE]
        monkeypatch.setenv("MIRROR_TOKEN", "push-tok")
        first = sync_course(config, course)
        assert first.ok and not first.mirror_error, first
        shutil.rmtree(tmp_path / "data")
        bucket.files["week1/new.md"] = b"new\n"
        second = sync_course(config, course)
        assert second.ok and second.changed and not second.mirror_error, second
        history = git("rev-list", "main", cwd=CourseRepo.for_course(config, COURSE).path).stdout.decode().split()
        assert first.commit in history and history[0] == second.commit


def test_backups_are_fast_forwarded_after_each_snapshot(tmp_path, memory_source):
    bucket = memory_source("b", {"a.txt": b"a"})
    config = parse({"server": {"data_dir": str(tmp_path / "data"), "backup_dir": str(tmp_path / "backup")},
                    "courses": {"c": {"source": "memory", "bucket": "b"}}}, tmp_path / "f2git.toml", {})
    for content in (b"b", b"c"):
        result = sync_course(config, config.courses["c"])
        backup_main = git("rev-parse", "main", cwd=backup_path(config, "c")).stdout.decode().strip()
        assert backup_main == result.commit
        bucket.files["a.txt"] = content


def test_a_backup_dir_inside_data_dir_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="'backup_dir': must be outside data_dir"):
        parse({"server": {"data_dir": str(tmp_path / "data"), "backup_dir": str(tmp_path / "data" / "b")}},
              tmp_path / "f2git.toml", {})
