"""The `local` connector against the real file system of this machine (a folder on the
server's disk), including a hostile owner who swaps parts of it for links mid-sync."""
from __future__ import annotations

import json
import os
import subprocess
import shutil
import tempfile
from pathlib import Path

import pytest

from connectors import EntryGone, SourceError
from connectors.local import LocalConnector, LocalOptions
from tests.conformance import ConnectorConformance, by_path, read_all

NOBODY = 65534


class TestLocalConformance(ConnectorConformance):
    @pytest.fixture(autouse=True)
    def _root(self, tmp_path):
        self.root = tmp_path / "course"
        self.root.mkdir()

    def publish(self, files):
        # Like an instructor: only changed files are written, so untouched ones keep their mtime.
        for path in sorted(self.root.rglob("*"), reverse=True):
            relative = path.relative_to(self.root).as_posix()
            if path.is_file() and relative not in files:
                path.unlink()
        for relative, content in files.items():
            target = self.root / relative
            if not target.is_file() or target.read_bytes() != content:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
        return LocalConnector(LocalOptions(path=self.root))


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "course"
    (folder / "week1").mkdir(parents=True)
    (folder / "week1" / "intro.ipynb").write_text("{}")
    (folder / "README.md").write_text("# Course\n")
    return folder


def listing_of(folder):
    with LocalConnector(LocalOptions(path=folder)) as connector:
        return connector.list({})


def test_links_and_special_files_are_skipped_and_reported(root, tmp_path):
    secret = tmp_path / "outside.txt"
    secret.write_text("not course material")
    outside_dir = tmp_path / "outside-dir"
    outside_dir.mkdir()
    (outside_dir / "private.txt").write_text("private")
    (root / "link-to-file").symlink_to(secret)
    (root / "link-to-dir").symlink_to(outside_dir)
    (root / "dangling").symlink_to(tmp_path / "missing")
    os.mkfifo(root / "pipe")

    listing = listing_of(root)

    assert set(by_path(listing)) == {"README.md", "week1/intro.ipynb"}
    skipped = {s.path: s.reason for s in listing.skipped}
    assert set(skipped) == {"link-to-file", "link-to-dir", "dangling", "pipe"}
    assert "link" in skipped["link-to-dir"]
    assert "not a regular file" in skipped["pipe"]


def test_missing_folder_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        listing_of(tmp_path / "nope")


def test_unreadable_folder_fails_the_listing_instead_of_dropping_files():
    """An incomplete listing must never look like deletions."""
    base = Path(tempfile.mkdtemp(prefix="f2git-local-"))
    try:
        base.chmod(0o755)  # reachable by the unprivileged child below
        (base / "locked").mkdir()
        (base / "locked" / "solutions.ipynb").write_text("{}")
        (base / "open.txt").write_text("x")
        (base / "locked").chmod(0o000)
        outcome = _list_as_unprivileged_user(base)
    finally:
        (base / "locked").chmod(0o755)
        shutil.rmtree(base)
    assert outcome["error"] == "SourceError"
    assert "locked" in outcome["message"] and "Permission denied" in outcome["message"]


def _list_as_unprivileged_user(folder: Path) -> dict:
    """List in a child process without root's power to read anything."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_end)
        result = {"error": None, "message": ""}
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            listing_of(folder)
        except SourceError as error:
            result = {"error": "SourceError", "message": str(error)}
        except BaseException as error:  # report, never let the child run pytest on
            result = {"error": type(error).__name__, "message": str(error)}
        finally:
            os.write(write_end, json.dumps(result).encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_version_is_mtime_and_size(root):
    file = root / "README.md"
    first = by_path(listing_of(root))["README.md"].version
    assert by_path(listing_of(root))["README.md"].version == first

    info = file.stat()
    os.utime(file, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))  # touched, same size
    touched = by_path(listing_of(root))["README.md"].version
    assert touched != first

    file.write_text("# Course, longer\n")
    os.utime(file, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))  # same mtime, new size
    assert by_path(listing_of(root))["README.md"].version != touched
    assert by_path(listing_of(root))["week1/intro.ipynb"].size == 2


def test_a_file_swapped_for_a_link_after_listing_is_not_followed(root, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not publish")
    with LocalConnector(LocalOptions(path=root)) as connector:
        entry = by_path(connector.list({}))["README.md"]
        (root / "README.md").unlink()
        (root / "README.md").symlink_to(secret)
        with pytest.raises(EntryGone, match="a link was put on its path"):
            read_all(connector, entry)


def test_options_require_a_path(tmp_path):
    from f2git.config import ConfigError, parse
    with pytest.raises(ConfigError, match=r"\[courses.c\] missing key 'path'"):
        parse({"courses": {"c": {"source": "local"}}}, tmp_path / "f.toml", {})


class SwappingConnector(LocalConnector):
    """Lists honestly, then swaps part of the tree the way a hostile folder owner would,
    before the engine reads a single file."""

    def __init__(self, options, swap, **kwargs):
        super().__init__(options, **kwargs)
        self.swap = swap

    def list(self, state):
        listing = super().list(state)
        self.swap()
        return listing


def synced_with_swap(make_config, root, swap):
    from f2git.snapshot import sync_course
    from f2git.store import CourseRepo
    config = make_config({"c": {"source": "local", "path": str(root)}})
    course = config.courses["c"]
    result = sync_course(config, course, connector=SwappingConnector(course.options, swap))
    repo = CourseRepo.for_course(config, "c")
    head = repo.head()
    blobs = repo.git("ls-tree", "-r", "--full-tree", head).split() if head else []
    contents = b"".join(repo.git("cat-file", "blob", oid).encode("utf-8", "surrogateescape")
                        for oid in blobs[2::4])
    return result, contents


@pytest.mark.parametrize("target", ["/proc/self", "outside"])
def test_a_folder_swapped_for_a_link_between_listing_and_reading_is_not_followed(root, tmp_path, make_config,
                                                                                   target, monkeypatch):
    monkeypatch.setenv("F2GIT_TEST_SECRET", "s3cr3t-token-value")
    (root / "env").mkdir()
    (root / "env" / "environ").write_text("harmless\n")
    (root / "env" / "cmdline").write_text("harmless\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("environ", "cmdline"):
        (outside / name).write_text("F2GIT_TEST_SECRET=s3cr3t-token-value\n")
    link_target = target if target.startswith("/") else str(outside)

    def swap():
        shutil.rmtree(root / "env")
        (root / "env").symlink_to(link_target)

    result, contents = synced_with_swap(make_config, root, swap)
    assert result.ok, result.error  # the rest of the course is published; these two wait
    reasons = {skip.path: skip.reason for skip in result.skipped}
    assert "link" in reasons["env/environ"] and "link" in reasons["env/cmdline"]
    assert b"s3cr3t" not in contents


def test_a_file_swapped_for_a_fifo_or_another_file_is_not_read(root, tmp_path, make_config):
    def to_fifo():
        (root / "README.md").unlink()
        os.mkfifo(root / "README.md")

    result, _ = synced_with_swap(make_config, root, to_fifo)  # would block forever if opened blocking
    assert result.ok and "replaced while the sync ran" in {s.path: s.reason for s in result.skipped}["README.md"]

    (root / "README.md").unlink()
    (root / "README.md").write_text("# Course\n")
    private = tmp_path / "private.txt"
    private.write_text("exam answers\n")
    (root / "week1" / "intro.ipynb").write_text('{"cells": []}')  # changed: this sync reads it

    def to_hard_link():
        (root / "week1" / "intro.ipynb").unlink()
        os.link(private, root / "week1" / "intro.ipynb")  # a regular file, but not the listed one

    result, contents = synced_with_swap(make_config, root, to_hard_link)
    reason = {s.path: s.reason for s in result.skipped}["week1/intro.ipynb"]
    assert result.ok and "replaced" in reason and "keep its last version" in reason
    assert b"exam answers" not in contents and b"{}" in contents  # the version students had


def test_an_instructors_checkout_is_published_without_its_git_folder_in_one_line(tmp_path, make_config):
    from f2git.snapshot import sync_course
    from f2git.store import CourseRepo
    course_folder = tmp_path / "checkout"
    course_folder.mkdir()
    (course_folder / "week1.ipynb").write_text("{}")
    subprocess.run(["git", "init", "-q", str(course_folder)], check=True)
    subprocess.run(["git", "-C", str(course_folder), "-c", "user.name=i", "-c", "user.email=i@example.org",
                    "commit", "-q", "--allow-empty", "-m", "solutions, deleted later"], check=True)
    (course_folder / "sub").mkdir()
    subprocess.run(["git", "init", "-q", str(course_folder / "sub" / "lib")], check=True)
    config = make_config({"c": {"source": "local", "path": str(course_folder)}})
    result = sync_course(config, config.courses["c"])
    assert result.ok, result.error
    assert {skip.path: skip.reason for skip in result.skipped} == {
        ".git/": "a git repository's own folder: never published (the files beside it are)",
        "sub/lib/.git/": "a git repository's own folder: never published (the files beside it are)"}
    repo = CourseRepo.for_course(config, "c")
    assert sorted(repo.files(repo.head())) == ["week1.ipynb"]
