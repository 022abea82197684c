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

and set `credential_hint`, the text naming the `*_env` variable(s) in an AuthError.
"""
from __future__ import annotations

import pytest

from connectors import AuthError, SourceError
from tests.conformance import by_path


def listed(connector) -> dict:
    return by_path(connector.list({}))


class LmsContract:
    credential_hint: str

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
        assert "rejected" in message and "401" in message and self.credential_hint in message
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
