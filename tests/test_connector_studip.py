"""The Stud.IP connector against `FakeStudip` (tests/studipfake.py), a `responses` fake of
Stud.IP's JSON:API whose resources Stud.IP's own schema classes and folder types build
(ported in tests/fixtures/studip/schemas.py), for a lecturer's account or a student's.
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
import responses

from connectors import SourceError
from f2git.config import ConfigError, parse
from tests.conformance import read_all
from tests.fixtures.studip.schemas import STUDENT
from tests.lms_contract import LmsConformance, LmsContract, listed
from tests.studipfake import BASE, COURSE, NOW, PASSWORD, USERNAME, FakeStudip, hex_id, unix

SECRET_NAME = "exam-solutions.ipynb"


@pytest.fixture
def fake():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeStudip(mock)


class TestStudipLmsContract(LmsContract):
    credential_hint = "$STUDIP_USER and $STUDIP_PASSWORD"


class TestStudipConformance(LmsConformance):
    pass


# --- release rules ------------------------------------------------------------------------

FUTURE, PAST = NOW + timedelta(days=2), NOW - timedelta(days=2)

CLOSED_FOLDERS = {
    "homework folder": ("HomeworkFolder", {"permission": 3}),
    "hidden folder": ("HiddenFolder", {"download_allowed": 1}),
    "group folder": ("CourseGroupFolder", {"group": hex_id("group", 1)}),
    "timed folder before its window": ("TimedFolder", {"permission": 7, "start_time": unix(FUTURE), "end_time": 0}),
    "timed folder after its window": ("TimedFolder", {"permission": 7, "start_time": unix(PAST - timedelta(days=9)),
                                                       "end_time": unix(PAST)}),
    "timed folder students may not read": ("TimedFolder", {"permission": 3, "start_time": unix(PAST), "end_time": 0}),
    "restricted folder without read": ("PermissionEnabledFolder", {"permission": 3}),
    "folder type f2git does not know": ("OpencastPluginFolder", {}),
}


@pytest.mark.parametrize("case", sorted(CLOSED_FOLDERS))
@pytest.mark.parametrize("depth", ["in it", "below it"])
def test_files_in_and_below_closed_folders_appear_nowhere(fake, case, depth):
    kind, data_content = CLOSED_FOLDERS[case]
    fake.publish({"README.md": b"r", "week1/intro.ipynb": b"{}"})
    secret_path = f"exam/{SECRET_NAME}" if depth == "in it" else f"exam/inner/{SECRET_NAME}"
    fake.put(secret_path, b"{}")
    fake.folder("exam", kind, **data_content)
    connector = fake.connector()
    listing = connector.list({})
    assert sorted(e.path for e in listing.entries) == ["README.md", "week1/intro.ipynb"]
    assert SECRET_NAME not in json.dumps([[s.path for s in listing.skipped], listing.state])
    # Closed folders' contents are not even fetched.
    closed = [folder.id for path, folder in fake.folders.items() if path.startswith("exam")]
    assert not any(folder_id in r.url for folder_id in closed for r in fake.requests)


@pytest.mark.parametrize("case", sorted(CLOSED_FOLDERS))
def test_a_student_account_is_shown_the_same(fake, case):
    """Stud.IP computes is-visible/is-readable for the account; a student's answer closes the
    same folders the lecturer's folder types do."""
    kind, data_content = CLOSED_FOLDERS[case]
    if kind == "OpencastPluginFolder":
        return  # a plugin's rules are its own: only f2git's caution closes it
    fake.viewer = STUDENT
    fake.publish({"README.md": b"r", f"exam/inner/{SECRET_NAME}": b"{}", f"exam/{SECRET_NAME}": b"{}"})
    fake.folder("exam", kind, **data_content)
    assert set(listed(fake.connector())) == {"README.md"}


def test_file_refs_whose_file_type_refuses_downloads_are_left_out(fake):
    fake.publish({"a.txt": b"a"})
    fake.put(SECRET_NAME, b"{}", downloadable=False)  # FileRef is-downloadable: the file type's say
    listing = fake.connector().list({})
    assert [e.path for e in listing.entries] == ["a.txt"] and listing.skipped == []


OPEN_FOLDERS = {
    "timed folder inside its window": ("TimedFolder", {"permission": 7, "start_time": unix(PAST), "end_time": unix(FUTURE)}),
    "timed folder opened, open-ended": ("TimedFolder", {"permission": 5, "start_time": unix(PAST), "end_time": 0}),
    "timed folder until a future end": ("TimedFolder", {"permission": 7, "start_time": 0, "end_time": str(unix(FUTURE))}),
    "material folder": ("MaterialFolder", {}),
    "topic folder": ("CourseTopicFolder", {"topic_id": hex_id("topic", 1)}),
    "date folder": ("CourseDateFolder", {"termin_id": hex_id("date", 1)}),
    "restricted folder students may read": ("PermissionEnabledFolder", {"permission": 5}),
}


@pytest.mark.parametrize("case", sorted(OPEN_FOLDERS))
def test_files_in_open_folders_are_released(fake, case):
    kind, data_content = OPEN_FOLDERS[case]
    fake.publish({"sheet/task.ipynb": b"{}", "sheet/data/d.csv": b"1"})
    fake.folder("sheet", kind, **data_content)
    assert set(listed(fake.connector())) == {"sheet/task.ipynb", "sheet/data/d.csv"}


# --- the folder option ---------------------------------------------------------------------

def test_folder_option_releases_that_folder_alone_as_the_root(fake):
    fake.publish({"README.md": b"r", "Übungen/Blatt 1/a.ipynb": b"{}", "Übungen/Blatt 1/data/x.csv": b"1"})
    connector = fake.connector(folder="Übungen/Blatt 1")
    entries = listed(connector)
    assert set(entries) == {"a.ipynb", "data/x.csv"}
    assert read_all(connector, entries["data/x.csv"]) == b"1"


# --- paging, errors, throttling ------------------------------------------------------------

def test_listing_follows_every_page_of_folders_and_file_refs(fake):
    files = {f"d{i % 4}/f{i:02}.txt": bytes([i]) for i in range(14)}
    fake.publish(files)
    assert set(listed(fake.connector())) == set(files)
    folder_pages = [r for r in fake.requests if "/folders?" in r.url and "courses/" in r.url]
    assert len(folder_pages) == 2  # top + 4 folders, 3 a page
    assert any("page%5Boffset%5D=3" in r.url or "page[offset]=3" in r.url for r in folder_pages)


def test_throttling_backs_off_then_succeeds(fake):
    fake.publish({"a.txt": b"a"})
    fake.injected[(f"courses/{COURSE}/folders", 0)] = [(429, {"Retry-After": "2"}, "")] * 2
    connector = fake.connector()
    assert set(listed(connector)) == {"a.txt"}
    assert len(connector.sleeps) == 2 and min(connector.sleeps) >= 2


def test_a_collection_that_changes_while_paging_fails_instead_of_missing_items(fake):
    fake.publish({f"f{i}.txt": b"x" for i in range(5)})
    route = f"folders/{fake.folders[''].id}/file-refs"
    shifted = {"meta": {"page": {"offset": 3, "limit": 3, "total": 4}}, "links": {},
               "data": [fake.resource(fake.refs["f4.txt"])]}  # f3 was deleted meanwhile: offsets moved
    fake.injected[(route, 3)] = [(200, {"Content-Type": "application/vnd.api+json"}, json.dumps(shifted))]
    with pytest.raises(SourceError, match="changed while"):
        fake.connector().list({})


def test_resources_missing_documented_members_are_a_source_error(fake):
    fake.publish({"a.txt": b"a"})
    odd = {"meta": {"page": {"offset": 0, "limit": 3, "total": 1}}, "data": [{"type": "folders"}]}
    fake.injected[(f"courses/{COURSE}/folders", 0)] = [(200, {"Content-Type": "application/vnd.api+json"},
                                                        json.dumps(odd))]
    with pytest.raises(SourceError, match="unexpected shape"):
        fake.connector().list({})


# --- downloads ----------------------------------------------------------------------------

def test_download_streams_with_basic_auth(fake):
    fake.publish({"data.bin": bytes(range(256)) * 64})
    connector = fake.connector()
    assert read_all(connector, listed(connector)["data.bin"]) == bytes(range(256)) * 64
    (download,) = [r for r in fake.requests if r.url.endswith("/content")]
    assert download.headers["Authorization"].startswith("Basic ")


@pytest.mark.parametrize("recorded_size", [0, 10])
def test_linked_file_redirect_gets_no_credentials_and_arrives_whole(fake, recorded_size):
    """Stud.IP's FileRef says nothing of links; `filesize` is what it learnt when the file was
    linked (0, or a size the file has since outgrown): the download itself tells its length."""
    fake.publish({"a.txt": b"a"})
    fake.put("lecture.mp4", b"\x00video" * 100, link=True, recorded_size=recorded_size)
    connector = fake.connector()
    entry = listed(connector)["lecture.mp4"]
    assert read_all(connector, entry) == b"\x00video" * 100
    (linked,) = fake.link_host_requests
    assert "Authorization" not in linked.headers


# --- versions and release times -----------------------------------------------------------

def test_next_release_is_the_earliest_future_timed_folder_start(fake):
    fake.publish({"now.txt": b"n", "sheet2/a.txt": b"a", "sheet3/b.txt": b"b", "hidden/sheet4/c.txt": b"c",
                  "sheet5/d.txt": b"d"})
    fake.folder("sheet2", "TimedFolder", permission=7, start_time=unix(NOW + timedelta(hours=3)), end_time=0)
    fake.folder("sheet3", "TimedFolder", permission=7, start_time=unix(NOW + timedelta(days=7)), end_time=0)
    fake.folder("hidden", "HiddenFolder")
    fake.folder("hidden/sheet4", "TimedFolder", permission=7, start_time=unix(NOW + timedelta(hours=1)), end_time=0)
    fake.folder("sheet5", "TimedFolder", permission=7, start_time=unix(NOW + timedelta(hours=2)),
                end_time=unix(NOW + timedelta(hours=1)))  # ends before it starts: never opens
    connector = fake.connector()
    listing = connector.list({})
    assert [e.path for e in listing.entries] == ["now.txt"]
    assert listing.next_release == NOW + timedelta(hours=3)
    connector.now = lambda: NOW + timedelta(hours=3)
    later = connector.list({})
    assert [e.path for e in later.entries] == ["now.txt", "sheet2/a.txt"]
    assert later.next_release == NOW + timedelta(days=7)


# --- configuration ------------------------------------------------------------------------

@pytest.mark.parametrize("account", [("jürgen.groß", "Pässwort mit Leerzeichen"), ("Zoë Ümit", "€uro:Straße: 100 €"),
                                     ("büro öffentlichkeit", "ß:ä:ö:ü: € ::")])
def test_accounts_with_umlauts_euro_signs_spaces_and_colons_log_in(fake, account):
    fake.account = account
    fake.publish({"a.txt": b"a"})
    connector = fake.connector()
    assert read_all(connector, listed(connector)["a.txt"]) == b"a"


def test_a_colon_in_the_user_name_is_named_not_sent(fake):
    fake.account = ("dr:who", PASSWORD)
    fake.publish({"a.txt": b"a"})
    with pytest.raises(SourceError, match=r"user name in \$STUDIP_USER contains ':'"):
        fake.connector().list({})
    assert fake.requests == []


def test_config_table_builds_validated_options(tmp_path):
    env = {"STUDIP_USER": USERNAME, "STUDIP_PASSWORD": PASSWORD}
    table = {"courses": {"info1": {"source": "studip", "url": BASE, "course_id": COURSE, "folder": "Übungen",
                                   "username_env": "STUDIP_USER", "password_env": "STUDIP_PASSWORD"}}}
    options = parse(table, tmp_path / "f2git.toml", env).courses["info1"].options
    assert (options.url, options.course_id, options.folder) == (BASE, COURSE, "Übungen")
    with pytest.raises(ConfigError, match="STUDIP_PASSWORD"):
        parse(table, tmp_path / "f2git.toml", {"STUDIP_USER": USERNAME})
    table["courses"]["info1"]["url"] = f"{BASE}/jsonapi.php/v1"
    with pytest.raises(ConfigError, match="key 'url'"):
        parse(table, tmp_path / "f2git.toml", env)
