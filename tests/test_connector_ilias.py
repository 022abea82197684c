"""ILIAS over WebDAV: a real WebDAV server (wsgidav) for the protocol, and `responses`
fixtures shaped like ILIAS's SabreDAV answers for the quirks only ILIAS has."""
from __future__ import annotations

import pytest
import responses

from connectors import AuthError, SourceError
from connectors.ilias import PROBLEM_FILE, IliasConnector, IliasOptions
from tests.conformance import ConnectorConformance, by_path, read_all
from tests.webdav import WebDAVServer, write_tree

PASSWORD = "Ilias-Secret-7f3a$`'\""
ENV = {"ILIAS_USER": "test.student", "ILIAS_PASSWORD": PASSWORD}


def connector_for(url: str, env: dict | None = None) -> IliasConnector:
    options = IliasOptions(webdav_url=url, username_env="ILIAS_USER", password_env="ILIAS_PASSWORD")
    options.validate()
    return IliasConnector(options, course="c", env=ENV if env is None else env)


@pytest.fixture
def dav(tmp_path):
    root = tmp_path / "course"
    root.mkdir()
    with WebDAVServer(root, prefix="/webdav.php/myclient/ref_4711",
                      username=ENV["ILIAS_USER"], password=PASSWORD) as server:
        yield server


class TestIliasOnRealWebDAV(ConnectorConformance):
    @pytest.fixture(autouse=True)
    def _server(self, dav):
        self.dav = dav

    def publish(self, files):
        write_tree(self.dav.root, files)
        return connector_for(self.dav.url)

    def test_names_that_need_percent_encoding(self):
        files = {"50% off #1 + more & less.txt": b"a", "Ä Ö/ß?;=.md": b"b", "日本語/ノート.ipynb": b"{}"}
        with self.publish(files) as connector:
            entries = by_path(connector.list({}))
            assert set(entries) == set(files)
            for path, content in files.items():
                assert read_all(connector, entries[path]) == content

    def test_nested_folders_are_walked_one_depth_1_request_per_folder(self):
        files = {"a/b/c/d/deep.txt": b"deep", "a/top.txt": b"t", "empty-sibling/x.txt": b"x"}
        with self.publish(files) as connector:
            (self.dav.root / "only-empty-folder").mkdir()
            assert set(by_path(connector.list({}))) == set(files)
            # root, a, a/b, a/b/c, a/b/c/d, empty-sibling, only-empty-folder
            assert connector.session.requests_made == 7

    def test_wrong_password_is_an_auth_error_without_the_password(self):
        write_tree(self.dav.root, {"a.txt": b"a"})
        wrong = "Wrong-Pa55-Distinctive-91b2"
        connector = connector_for(self.dav.url, env={**ENV, "ILIAS_PASSWORD": wrong})
        with connector, pytest.raises(AuthError) as caught:
            connector.list({})
        message = str(caught.value)
        assert "rejected the credentials" in message and "ILIAS_PASSWORD" in message
        assert wrong not in message and PASSWORD not in message

    def test_missing_environment_variable_is_named(self):
        connector = connector_for(self.dav.url, env={"ILIAS_USER": "x"})
        with connector, pytest.raises(SourceError, match="ILIAS_PASSWORD is not set"):
            connector.list({})


# --- ILIAS/SabreDAV quirks, with answers shaped like ILIAS 8's webdav.php -----------------

BASE = "https://ilias.example.edu/webdav.php/uni/ref_4711/"
ROOT_PATH = "/webdav.php/uni/ref_4711/"


def folder(href: str) -> str:
    return f"""<d:response><d:href>{href}</d:href><d:propstat><d:prop>
<d:resourcetype><d:collection/></d:resourcetype>
<d:getlastmodified>Mon, 06 Oct 2025 09:12:44 GMT</d:getlastmodified>
</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
<d:propstat><d:prop><d:getcontentlength/><d:getetag/></d:prop>
<d:status>HTTP/1.1 404 Not Found</d:status></d:propstat></d:response>"""


def file(href: str, size: int, etag: str | None = None, modified: str = "Tue, 07 Oct 2025 14:03:10 GMT") -> str:
    found = f"<d:getetag>&quot;{etag}&quot;</d:getetag>" if etag else ""
    missing = "" if etag else """<d:propstat><d:prop><d:getetag/></d:prop>
<d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>"""
    return f"""<d:response><d:href>{href}</d:href><d:propstat><d:prop>
<d:resourcetype/><d:getcontentlength>{size}</d:getcontentlength>
<d:getlastmodified>{modified}</d:getlastmodified>{found}
</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>{missing}</d:response>"""


def multistatus(*responses_xml: str) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>\n<d:multistatus xmlns:d="DAV:"'
            ' xmlns:s="http://sabredav.org/ns">' + "".join(responses_xml) + "</d:multistatus>")


def propfind(url: str, body: str, status: int = 207, content_type: str = "application/xml; charset=utf-8"):
    responses.add("PROPFIND", url, body=body, status=status, content_type=content_type,
                  match=[responses.matchers.header_matcher({"Depth": "1"})])


@responses.activate
def test_ilias_answers_absolute_url_hrefs_404_propstats_and_problem_files():
    propfind(BASE, multistatus(
        folder(BASE),  # ILIAS names the folder itself with an absolute URL
        folder(BASE + "%C3%9Cbungen/"),
        file(BASE + "Skript%20Kapitel%201.pdf", 5, etag="a1b2c3"),
        file(ROOT_PATH + PROBLEM_FILE, 120),
    ))
    propfind(BASE + "%C3%9Cbungen/", multistatus(
        folder(ROOT_PATH + "%C3%9Cbungen/"),
        file(ROOT_PATH + "%C3%9Cbungen/Blatt%2001.ipynb", 3),  # getetag only in a 404 propstat
        file(ROOT_PATH + "%C3%9Cbungen/" + PROBLEM_FILE, 120),
    ))
    responses.add("GET", BASE + "%C3%9Cbungen/Blatt%2001.ipynb", body=b"{}\n")
    with connector_for(BASE) as connector:
        listing = connector.list({})
        entries = {entry.path: entry for entry in listing.entries}
        assert set(entries) == {"Skript Kapitel 1.pdf", "Übungen/Blatt 01.ipynb"}
        assert entries["Skript Kapitel 1.pdf"].version == "etag:a1b2c3"
        assert entries["Übungen/Blatt 01.ipynb"].version == "modified:Tue, 07 Oct 2025 14:03:10 GMT:3"
        assert entries["Übungen/Blatt 01.ipynb"].size == 3
        assert {s.path for s in listing.skipped} == {PROBLEM_FILE, f"Übungen/{PROBLEM_FILE}"}
        assert all("unique" in s.reason and "title" in s.reason for s in listing.skipped)
        assert read_all(connector, entries["Übungen/Blatt 01.ipynb"]) == b"{}\n"


@responses.activate
def test_a_new_modification_time_changes_the_version_without_etag():
    propfind(BASE, multistatus(folder(BASE), file(ROOT_PATH + "a.txt", 3)))
    propfind(BASE, multistatus(folder(BASE), file(ROOT_PATH + "a.txt", 3, modified="Wed, 08 Oct 2025 08:00:00 GMT")))
    with connector_for(BASE) as connector:
        before = connector.list({}).entries[0].version
        after = connector.list({}).entries[0].version
    assert before != after


@responses.activate
def test_html_login_page_answered_with_200_is_an_error_not_an_empty_course():
    responses.add("PROPFIND", BASE, status=302, headers={"Location": "https://ilias.example.edu/login.php"})
    responses.add("GET", "https://ilias.example.edu/login.php", status=200,
                  body="<!DOCTYPE html><html><body><form>Login</form></body></html>",
                  content_type="text/html; charset=UTF-8")
    with connector_for(BASE) as connector, pytest.raises(SourceError, match="HTML page.*login page"):
        connector.list({})


@responses.activate
def test_html_with_200_to_the_propfind_itself_is_an_error():
    propfind(BASE, "<html><body>ILIAS</body></html>", status=200, content_type="text/html")
    with connector_for(BASE) as connector, pytest.raises(SourceError, match="HTML page"):
        connector.list({})


@responses.activate
def test_a_failing_subfolder_fails_the_whole_listing():
    """A partial listing would read as deletions: one bad folder fails everything."""
    propfind(BASE, multistatus(folder(BASE), folder(BASE + "a/"), file(BASE + "x.txt", 1, etag="1")))
    responses.add("PROPFIND", BASE + "a/", status=500)
    with connector_for(BASE) as connector:
        connector.session.sleep = lambda seconds: None
        with pytest.raises(SourceError, match="500"):
            connector.list({})
        assert connector.session.requests_made == 2 + connector.session.retries


@responses.activate
def test_transient_errors_are_retried():
    responses.add("PROPFIND", BASE, status=503)
    propfind(BASE, multistatus(folder(BASE), file(BASE + "x.txt", 1, etag="1")))
    with connector_for(BASE) as connector:
        waits = []
        connector.session.sleep = waits.append
        assert [e.path for e in connector.list({}).entries] == ["x.txt"]
        assert len(waits) == 1


@responses.activate
def test_member_with_an_error_status_fails_the_listing():
    bad = f"<d:response><d:href>{ROOT_PATH}gone.pdf</d:href><d:status>HTTP/1.1 403 Forbidden</d:status></d:response>"
    propfind(BASE, multistatus(folder(BASE), bad))
    with connector_for(BASE) as connector, pytest.raises(SourceError, match="403 Forbidden.*gone.pdf"):
        connector.list({})


@responses.activate
def test_entity_expansion_is_refused():
    bomb = ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
            '<d:multistatus xmlns:d="DAV:"><d:response><d:href>&b;</d:href></d:response></d:multistatus>')
    propfind(BASE, bomb)
    with connector_for(BASE) as connector, pytest.raises(SourceError, match="unreadable WebDAV listing"):
        connector.list({})


@responses.activate
def test_hrefs_outside_the_course_folder_are_refused():
    propfind(BASE, multistatus(folder(BASE), file("/webdav.php/uni/ref_999/secret.pdf", 1, etag="1")))
    with connector_for(BASE) as connector, pytest.raises(SourceError, match="outside the course folder"):
        connector.list({})


@responses.activate
def test_the_password_goes_only_to_the_ilias_host():
    propfind(BASE, multistatus(folder(BASE), file(BASE + "x.txt", 1, etag="1")))
    responses.add("GET", BASE + "x.txt", status=302, headers={"Location": "https://files.example.org/x.txt"})
    responses.add("GET", "https://files.example.org/x.txt", body=b"x")
    with connector_for(BASE) as connector:
        assert read_all(connector, connector.list({}).entries[0]) == b"x"
    assert responses.calls[0].request.headers["Authorization"].startswith("Basic ")
    assert "Authorization" not in responses.calls[-1].request.headers


@pytest.mark.parametrize("url, message", [
    ("", "missing key 'webdav_url'"),
    ("ftp://ilias.example.edu/webdav.php/uni/ref_1/", "not an http"),
    ("https://ilias.example.edu/goto.php?target=crs_4711", "not a page link"),
])
def test_options_name_the_wrong_key(url, message):
    options = IliasOptions(webdav_url=url, username_env="U", password_env="P")
    with pytest.raises(ValueError, match=message):
        options.validate()


def test_a_course_config_loads_and_gets_a_trailing_slash():
    import tomllib
    from pathlib import Path

    from f2git import config
    table = tomllib.loads('[courses.ml]\nsource = "ilias"\n'
                          'webdav_url = "https://ilias.example.edu/webdav.php/myilias/ref_4711"\n'
                          'username_env = "ILIAS_USER"\npassword_env = "ILIAS_PASSWORD"\n')
    course = config.parse(table, Path("f2git.toml"), ENV).courses["ml"]
    assert isinstance(course.connector(ENV), IliasConnector)
    assert course.options.webdav_url.endswith("/ref_4711/")


def test_a_sync_through_the_engine_commits_the_course_and_reports_problem_files(dav, make_config):
    """The whole path: real WebDAV → snapshot engine → git; then one edit → one modified file."""
    from f2git import status
    from f2git.snapshot import sync_course
    from f2git.store import CourseRepo

    write_tree(dav.root, {"Skript.pdf": b"%PDF-1", "Übung 1/Blatt.ipynb": b"{}", f"Übung 1/{PROBLEM_FILE}": b"x"})
    table = {"source": "ilias", "webdav_url": dav.url, "username_env": "ILIAS_USER", "password_env": "ILIAS_PASSWORD"}
    config = make_config({"ml": table}, env=ENV)
    course = config.courses["ml"]
    first = sync_course(config, course, connector=course.connector(ENV))
    assert first.ok, first.error
    repo = CourseRepo.for_course(config, "ml")
    assert set(repo.files(repo.head())) == {"Skript.pdf", "Übung 1/Blatt.ipynb"}
    assert [s.path for s in first.skipped] == [f"Übung 1/{PROBLEM_FILE}"]

    write_tree(dav.root, {"Skript.pdf": b"%PDF-2, longer", "Übung 1/Blatt.ipynb": b"{}", f"Übung 1/{PROBLEM_FILE}": b"x"})
    second = sync_course(config, course, connector=course.connector(ENV))
    assert (second.ok, second.added, second.modified, second.deleted) == (True, 0, 1, 0)

    wrong = {**ENV, "ILIAS_PASSWORD": "Wrong-Distinctive-e2e-Pa55"}
    failed = sync_course(config, course, connector=course.connector(wrong))
    assert not failed.ok and failed.auth_failed and "rejected the credentials" in failed.error
    recorded = repr(status.read(config, "ml").to_json()) + repr(failed.to_json())
    assert wrong["ILIAS_PASSWORD"] not in recorded and PASSWORD not in recorded
    assert repo.head() == second.commit  # the last snapshot stays served
