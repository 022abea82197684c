"""ILIAS over WebDAV, against the real server software: Debian's sabre/dav (ILIAS's WebDAV
is built on sabre/dav) under `php -S`, with nodes that follow ILIAS's own rules from
components/ILIAS/WebDAV/classes/dav/class.ilDAVFile.php (ETag = sha1(size + name + creation
date); last-modified = the object's last update; no ETag for empty files) and sabre's
HTTP Basic backend (tests/iliasdav.py, tests/servers/ilias_router.php). `responses` fixtures
shaped like ILIAS 8's webdav.php answers cover quirks a sabre server alone does not show
(absolute-URL hrefs, login pages, broken members).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata

import pytest
import responses

from connectors import AuthError, SourceError
from connectors.ilias import PROBLEM_FILE, IliasConnector, IliasOptions
from tests.conformance import ConnectorConformance, by_path, read_all
from tests.iliasdav import IliasDav

PASSWORD = "Ilias-Secret-7f3a$`'\""
ENV = {"ILIAS_USER": "test.student", "ILIAS_PASSWORD": PASSWORD}
# What real accounts hold: umlauts, ß, €, spaces and colons (a colon only in the password:
# HTTP Basic splits user and password at the first one).
ACCOUNTS = [
    ("jürgen.groß", "Pässwort mit Leerzeichen"),
    ("Zoë Ümit", "€uro:Straße: 100 €"),
    ("büro-öffentlichkeit", "ß:ä:ö:ü: € ::"),
    ("nfd-u\u0308ser", "pa\u0308ss \u20ac"),
]


def connector_for(url: str, env: dict | None = None) -> IliasConnector:
    options = IliasOptions(webdav_url=url, username_env="ILIAS_USER", password_env="ILIAS_PASSWORD")
    options.validate()
    return IliasConnector(options, course="c", env=ENV if env is None else env)


@pytest.fixture(scope="module")
def ilias(tmp_path_factory):
    with IliasDav(tmp_path_factory.mktemp("ilias"), username=ENV["ILIAS_USER"], password=PASSWORD) as server:
        yield server


@pytest.fixture
def dav(ilias):
    ilias.set_account(ENV["ILIAS_USER"], PASSWORD)
    ilias.publish({})
    return ilias


def propfind_etags(server: IliasDav, env: dict = ENV) -> dict[str, tuple[str, str]]:
    """path -> (raw ETag, last-modified) as the server answers them."""
    with connector_for(server.url, env) as connector:
        return {item.path.rsplit("/", 1)[-1]: (item.etag, item.last_modified)
                for item in connector._propfind(server.url) if not item.is_folder}


class TestIliasOnSabreDav(ConnectorConformance):
    @pytest.fixture(autouse=True)
    def _server(self, dav):
        self.dav = dav

    def publish(self, files):
        self.dav.publish(files)
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
        self.dav.publish(files, folders=("only-empty-folder",))
        with connector_for(self.dav.url) as connector:
            assert set(by_path(connector.list({}))) == set(files)
            # root, a, a/b, a/b/c, a/b/c/d, empty-sibling, only-empty-folder
            assert connector.session.requests_made == 7

    def test_a_same_size_edit_changes_the_version_though_ilias_keeps_the_etag(self):
        """The defect: "teh" → "the" is a new version with ILIAS's old ETag."""
        self.dav.publish({"Skript.txt": b"teh answer"})
        before_raw = propfind_etags(self.dav)["Skript.txt"]
        with connector_for(self.dav.url) as connector:
            before = connector.list({}).entries[0]
        self.dav.publish({"Skript.txt": b"the answer"})
        after_raw = propfind_etags(self.dav)["Skript.txt"]
        assert after_raw[0] == before_raw[0] and after_raw[1] != before_raw[1]  # ILIAS's rule
        with connector_for(self.dav.url) as connector:
            after = connector.list({}).entries[0]
            assert after.version != before.version
            assert read_all(connector, after) == b"the answer"

    def test_a_new_creation_date_alone_keeps_the_version(self):
        self.dav.publish({"Skript.txt": b"content"})
        with connector_for(self.dav.url) as connector:
            before = connector.list({}).entries[0]
        etag = propfind_etags(self.dav)["Skript.txt"][0]
        self.dav.recreate("Skript.txt")
        assert propfind_etags(self.dav)["Skript.txt"][0] != etag  # ILIAS's rule
        with connector_for(self.dav.url) as connector:
            assert connector.list({}).entries[0].version == before.version

    def test_empty_files_have_no_etag_and_still_a_version(self):
        self.dav.publish({"empty.txt": b"", "full.txt": b"x"})
        raw = propfind_etags(self.dav)
        assert raw["empty.txt"][0] == "" and raw["full.txt"][0]
        with connector_for(self.dav.url) as connector:
            entries = by_path(connector.list({}))
            assert entries["empty.txt"].version and read_all(connector, entries["empty.txt"]) == b""

    def test_wrong_password_is_an_auth_error_without_the_password(self):
        self.dav.publish({"a.txt": b"a"})
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


@pytest.mark.parametrize("username, password", ACCOUNTS)
def test_utf8_credentials_are_accepted_as_ilias_accepts_them(dav, username, password):
    """Sabre compares the raw bytes: what ILIAS's users typed, in UTF-8."""
    dav.set_account(username, password)
    dav.publish({"a.txt": b"a"})
    with connector_for(dav.url, env={"ILIAS_USER": username, "ILIAS_PASSWORD": password}) as connector:
        assert read_all(connector, connector.list({}).entries[0]) == b"a"


def test_a_colon_in_the_user_name_is_a_clear_error_not_a_wrong_login(dav):
    with connector_for(dav.url, env={"ILIAS_USER": "dr:who", "ILIAS_PASSWORD": "x"}) as connector:
        with pytest.raises(SourceError, match=r"user name in \$ILIAS_USER contains ':'"):
            connector.list({})


def test_any_character_in_the_secrets_gives_one_json_line_per_course_never_a_traceback(dav, tmp_path):
    """`f2git sync --json` with hostile secrets: each course answers in one JSON line."""
    dav.publish({"a.txt": b"a"})
    secrets = {"good": ("jürgen", "€ß: ä"), "colon": ("a:b", "pw"), "control": ("x\x01y", "\x00\r\n€"),
               "surrogate": ("u", "caf\udce9"), "wrong": ("jürgen", "€uro")}
    dav.set_account(*secrets["good"])
    config = tmp_path / "f2git.toml"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ILIAS", "F2GIT"))}
    table = ['[server]', f'data_dir = "{tmp_path / "data"}"']
    for name, (user, password) in secrets.items():
        table += [f"[courses.{name}]", 'source = "ilias"', f'webdav_url = "{dav.url}"',
                  f'username_env = "U_{name.upper()}"', f'password_env = "P_{name.upper()}"']
        env[f"U_{name.upper()}"], env[f"P_{name.upper()}"] = user, password.replace("\x00", "")
    config.write_text("\n".join(table) + "\n", encoding="utf-8")
    env = {key.encode(): value.encode("utf-8", "surrogateescape") for key, value in env.items()}
    done = subprocess.run([sys.executable, "-c", "from f2git.cli import main; raise SystemExit(main())",
                           "--config", str(config), "sync", "--json"], env=env, capture_output=True, timeout=120)
    assert b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")
    results = {line["course"]: line for line in map(json.loads, done.stdout.decode().splitlines())}
    assert set(results) == set(secrets) and done.returncode == 1, done.stderr.decode(errors="replace")
    assert results["good"]["ok"] and results["good"]["added"] == 1
    assert "':'" in results["colon"]["error"] and "U_COLON" in results["colon"]["error"]
    assert "rejected the credentials" in results["wrong"]["error"]
    for name in ("control", "surrogate"):
        assert not results[name]["ok"] and "rejected the credentials" in results[name]["error"]
    assert "€uro" not in done.stdout.decode() + done.stderr.decode(errors="replace")


def test_nfd_names_from_a_mac_upload_are_written_in_nfc_and_read_from_their_own_url(dav, make_config):
    """A Mac uploads "Übung" decomposed (U + combining diaeresis); git gets one NFC name, so
    every student sees the same name; an NFC twin of it in the same folder is skipped."""
    from f2git.snapshot import sync_course
    from f2git.store import CourseRepo

    nfd = unicodedata.normalize("NFD", "Übung 1/Lösung.ipynb")
    dav.publish({nfd: b"{}", unicodedata.normalize("NFD", "Café.txt"): b"nfd", "Café.txt": b"nfc"})
    config = make_config({"ml": course_table(dav)}, env=ENV)
    result = sync_course(config, config.courses["ml"], connector=config.courses["ml"].connector(ENV))
    assert result.ok, result.error
    repo = CourseRepo.for_course(config, "ml")
    files = repo.files(repo.head())
    assert set(files) == {"Übung 1/Lösung.ipynb", "Café.txt"}
    assert all(unicodedata.is_normalized("NFC", path) for path in files)
    assert repo.git("cat-file", "blob", files["Übung 1/Lösung.ipynb"]) == "{}"
    assert [s.reason for s in result.skipped] == ["the same name as Café.txt"]


def course_table(server: IliasDav) -> dict:
    return {"source": "ilias", "webdav_url": server.url, "username_env": "ILIAS_USER", "password_env": "ILIAS_PASSWORD"}


def test_a_sync_downloads_exactly_what_changed_on_ilias(dav, make_config):
    """Real server → engine → git, through the changes ILIAS produces: a same-size edit, a
    new creation date only, a rename, a file replaced by a folder of the same name."""
    from f2git.snapshot import sync_course
    from f2git.store import CourseRepo

    config = make_config({"ml": course_table(dav)}, env=ENV)
    course = config.courses["ml"]
    repo = CourseRepo.for_course(config, "ml")

    def sync():
        result = sync_course(config, course, connector=course.connector(ENV))
        assert result.ok, result.error
        return result

    def tree():
        return {path: repo.git("cat-file", "blob", blob) for path, blob in repo.files(repo.head()).items()}

    dav.publish({"Skript.txt": b"teh answer", "Blatt": b"a file", "alt.md": b"old name"})
    sync()
    dav.publish({"Skript.txt": b"the answer", "Blatt": b"a file", "alt.md": b"old name"})
    edited = sync()
    assert (edited.modified, edited.source_traffic.bytes) == (1, len(b"the answer"))
    assert tree()["Skript.txt"] == "the answer"

    dav.recreate("Blatt")
    again = sync()
    assert not again.changed and again.source_traffic.bytes == 0  # no download

    dav.publish({"Skript.txt": b"the answer", "Blatt/a.txt": b"in a folder", "neu.md": b"old name"})
    moved = sync()
    assert (moved.added, moved.modified, moved.deleted) == (2, 0, 2)
    assert tree() == {"Skript.txt": "the answer", "Blatt/a.txt": "in a folder", "neu.md": "old name"}


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
        assert entries["Skript Kapitel 1.pdf"].version == "modified:Tue, 07 Oct 2025 14:03:10 GMT:5"
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

    files = {"Skript.pdf": b"%PDF-1", "Übung 1/Blatt.ipynb": b"{}", f"Übung 1/{PROBLEM_FILE}": b"x"}
    dav.publish(files)
    config = make_config({"ml": course_table(dav)}, env=ENV)
    course = config.courses["ml"]
    first = sync_course(config, course, connector=course.connector(ENV))
    assert first.ok, first.error
    repo = CourseRepo.for_course(config, "ml")
    assert set(repo.files(repo.head())) == {"Skript.pdf", "Übung 1/Blatt.ipynb"}
    assert [s.path for s in first.skipped] == [f"Übung 1/{PROBLEM_FILE}"]

    dav.publish({**files, "Skript.pdf": b"%PDF-2, longer"})
    second = sync_course(config, course, connector=course.connector(ENV))
    assert (second.ok, second.added, second.modified, second.deleted) == (True, 0, 1, 0)

    wrong = {**ENV, "ILIAS_PASSWORD": "Wrong-Distinctive-e2e-Pa55"}
    failed = sync_course(config, course, connector=course.connector(wrong))
    assert not failed.ok and failed.auth_failed and "rejected the credentials" in failed.error
    recorded = repr(status.read(config, "ml").to_json()) + repr(failed.to_json())
    assert wrong["ILIAS_PASSWORD"] not in recorded and PASSWORD not in recorded
    assert repo.head() == second.commit  # the last snapshot stays served
