"""Promises of connectors that apply an LMS's release rules with a staff account (Canvas,
Stud.IP), on top of ConnectorConformance. Mix `LmsContract` into a test class whose
`fake` fixture gives an API fake with:

    publish(files)              the instructor releases exactly `files`
    put(path, content)          uploads or replaces one file
    close_folder(path)          makes a folder unreleased for students
    connector(**options)        a connector reading it; its `sleeps` records retry waits
    login_page = True           the API answers with an HTML login page
    fail_page(n, answers)       the n-th page of the top folder's file listing first serves `answers`
    reject(connector)           gives the connector a wrong secret and returns it
    open_later(path, at)        makes a folder open for students only at `at`
    course_table(), env         the config table of the course and the environment it needs
    now                         the fixed "now" of the connectors it makes

and set `credential_hint`, the text naming the `*_env` variable(s) in an AuthError (and
`rejection_words`, what that error says, where the API rejects credentials without a 401).
"""
from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import pytest

from connectors import AuthError, SourceError
from f2git import status
from f2git.snapshot import sync_course
from f2git.store import CourseRepo
from tests.conformance import ConnectorConformance, by_path

SECRET_NAME = "exam-solutions.ipynb"
SECRET_BYTES = b"the answer to question 3 is 42"


def listed(connector) -> dict:
    return by_path(connector.list({}))


class LmsConformance(ConnectorConformance):
    """The shared connector suite, run against the test class's `fake` fixture."""

    @pytest.fixture(autouse=True)
    def _fake(self, fake):
        self.fake = fake

    def publish(self, files):
        self.fake.publish(files)
        return self.fake.connector()


class LmsContract:
    credential_hint: str
    rejection_words: tuple[str, ...] = ("rejected", "401")  # Moodle says so in an HTTP 200 answer

    def test_folder_option_still_obeys_the_folders_above(self, fake):
        fake.publish({"week1/data/x.csv": b"1", "other.txt": b"o"})
        fake.close_folder("week1")
        assert fake.connector(folder="week1/data").list({}).entries == []

    def test_folder_option_naming_a_missing_folder_is_an_error(self, fake):
        fake.publish({"week1/data/x.csv": b"1"})
        with pytest.raises(SourceError, match="no folder 'week2'"):
            fake.connector(folder="week2").list({})

    def test_rejected_credentials_are_an_auth_error_without_the_secret(self, fake):
        fake.publish({"a.txt": b"a"})
        connector = fake.connector()
        wrong = fake.reject(connector)
        with pytest.raises(AuthError) as caught:
            connector.list({})
        message = str(caught.value)
        assert all(word in message for word in self.rejection_words) and self.credential_hint in message
        assert wrong not in message and fake.secret not in message

    def test_html_login_page_is_an_error_not_an_empty_course(self, fake):
        fake.publish({"a.txt": b"a"})
        fake.login_page = True
        with pytest.raises(SourceError, match="HTML"):
            fake.connector().list({})

    def test_server_error_on_page_three_is_retried_then_fails_the_whole_listing(self, fake):
        fake.publish({f"f{i}.txt": b"x" for i in range(9)})
        fake.fail_page(3, [(500, {}, "Internal Server Error")] * 10)
        connector = fake.connector()
        with pytest.raises(SourceError, match="500"):
            connector.list({})
        assert len(connector.sleeps) == 4  # bounded retries
        assert connector.sleeps == sorted(connector.sleeps) and connector.sleeps[0] > 0  # backing off

    def test_one_server_error_is_retried_and_the_listing_completes(self, fake):
        fake.publish({f"f{i}.txt": b"x" for i in range(9)})
        fake.fail_page(3, [(503, {}, "Service Unavailable")])
        assert len(listed(fake.connector())) == 9

    def test_one_edit_changes_exactly_one_version(self, fake):
        fake.publish({"a.txt": b"a", "b/c.txt": b"c", "b/d.txt": b"d"})
        before = {p: e.version for p, e in listed(fake.connector()).items()}
        fake.put("b/c.txt", b"c2")
        after = {p: e.version for p, e in listed(fake.connector()).items()}
        assert [p for p in before if before[p] != after[p]] == ["b/c.txt"]

    def test_a_sync_commits_only_released_files_and_leaks_no_unreleased_name(self, fake, make_config):
        released = {"README.md": b"# Course\n", "week1/intro.ipynb": b'{"cells": []}'}
        fake.publish({**released, f"exam/{SECRET_NAME}": SECRET_BYTES, f"week2/{SECRET_NAME}": SECRET_BYTES})
        fake.close_folder("exam")
        fake.open_later("week2", fake.now + timedelta(hours=6))
        config = make_config({"c1": fake.course_table()}, env=fake.env)
        result = sync_course(config, config.courses["c1"], connector=fake.connector())
        assert result.ok, result.error
        repo = CourseRepo.for_course(config, "c1")
        tree = {path: repo.git("cat-file", "blob", blob) for path, blob in repo.files(repo.head()).items()}
        assert tree == {path: content.decode() for path, content in released.items()}
        assert result.next_release == fake.now + timedelta(hours=6)
        everything = subprocess.run(["git", "--git-dir", str(repo.path), "cat-file", "--batch-all-objects", "--batch"],
                                    check=True, capture_output=True).stdout
        recorded = json.dumps([result.to_json(), status.read(config, "c1").to_json()], default=str)
        for where in (everything, recorded.encode()):
            assert SECRET_NAME.encode() not in where and SECRET_BYTES not in where
