"""The Stud.IP connector against a `responses` fake of Stud.IP's JSON:API whose resources are
built as Stud.IP's own schema classes build them (lib/classes/JsonApi/Schemas/Folder.php and
FileRef.php: attributes, relationships, meta), with each folder type's visibility rules from
lib/filesystem/*Folder.php, ported in tests/fixtures/studip/schemas.py, for a lecturer's
account (what f2git uses) or a student's.

The fake serves every folder of the course in one flat collection (`courses/{id}/folders`,
top folder included, with `parent` relationships), `folders/{id}/file-refs`, offset paging
with `meta.page` and `links`, and `file-refs/{id}/content` with an ETag, or a redirect for
linked files (FileRefsContentShow.php).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Mapping
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import responses

from connectors import SourceError
from connectors.studip import StudipConnector, StudipOptions
from f2git.config import ConfigError, parse
from tests.conformance import read_all
from tests.fixtures.studip.schemas import LECTURER, STUDENT, FileRef, Folder, file_ref_resource, folder_resource
from tests.lms_contract import LmsConformance, LmsContract, listed

BASE = "https://studip.example.de"
API = f"{BASE}/jsonapi.php/v1"
LINK_HOST = "https://media.example.org"
COURSE = "a07535cf2f8a72df33c12ddfa4b53dde"
USERNAME = "dozent.mueller"
PASSWORD = "Stud!P-Secret-Pw-5531"
NOW = datetime(2026, 11, 21, 23, 0, tzinfo=timezone.utc)
SECRET_NAME = "exam-solutions.ipynb"


def stamp(moment: datetime) -> str:
    return moment.astimezone(timezone(timedelta(hours=1))).isoformat()


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


def hex_id(*parts) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


class FakeStudip:
    """The JSON:API routes f2git uses, for one course, as a lecturer sees them."""

    def __init__(self, mock: responses.RequestsMock):
        self.mock = mock
        self.page_limit = 3  # the fake's cap, so small courses still span several pages
        self.serial = itertools.count(1)
        self.clock = NOW - timedelta(days=30)
        self.folders: dict[str, Folder] = {}  # path ("" = top folder) → folder
        self.viewer = LECTURER  # whose account the connector logs in with
        self.account = (USERNAME, PASSWORD)
        self.refs: dict[str, FileRef] = {}  # path → file-ref
        self.content: dict[str, bytes] = {}  # file-ref id → bytes
        self.injected: dict[tuple[str, int], list] = {}  # (route, offset) → canned answers served first
        self.login_page = False
        self.requests: list = []
        self.link_host_requests: list = []
        self._folder("", "RootFolder")
        route = re.compile(rf"{re.escape(API)}/(courses/{COURSE}/folders|folders/\w+/file-refs)(\?.*)?$")
        mock.add_callback(responses.GET, route, callback=self._collection)
        mock.add_callback(responses.GET, re.compile(rf"{re.escape(API)}/file-refs/\w+/content$"),
                          callback=self._content)
        mock.add_callback(responses.GET, re.compile(rf"{re.escape(LINK_HOST)}/.*"), callback=self._linked)

    # --- the lecturer's side -----------------------------------------------------------------

    def _tick(self) -> str:
        self.clock += timedelta(minutes=11)
        return stamp(self.clock)

    def _folder(self, path: str, kind: str = "StandardFolder", data_content=None) -> Folder:
        name = path.rsplit("/", 1)[-1] if path else "Einführung in die Informatik"
        parent = self.folder(path.rsplit("/", 1)[0] if "/" in path else "") if path else None
        self._tick()
        self.folders[path] = Folder(id=hex_id("folder", path), name=name, kind=kind, parent=parent, course=COURSE,
                                    owner=USERNAME, mkdate=self.clock, chdate=self.clock,
                                    data_content=dict(data_content or {}))
        return self.folders[path]

    def folder(self, path: str, kind: str | None = None, **data_content) -> Folder:
        """The folder at `path`, created as a StandardFolder if new; `kind` retypes it."""
        if path not in self.folders:
            self._folder(path)
        if kind:
            self.folders[path].kind = kind
            self.folders[path].data_content = data_content or self.folders[path].data_content
        return self.folders[path]

    def put(self, path: str, content: bytes, *, link: bool = False, recorded_size: int | None = None,
            downloadable: bool = True) -> FileRef:
        """Upload (or replace) a file; `link` makes it a linked file Stud.IP redirects to,
        `recorded_size` the size Stud.IP noted when it was linked."""
        folder_path, _, name = path.rpartition("/")
        folder = self.folder(folder_path)
        old = self.refs.get(path)
        if old is not None and self.content[old.id] == content and not link and downloadable:
            return old
        ref_id = old.id if old else hex_id("ref", path, next(self.serial))
        self._tick()
        self.refs[path] = FileRef(
            id=ref_id, file_id=hex_id("file", path, next(self.serial)),  # replaced content is a new file
            name=name, folder=folder, size=len(content) if recorded_size is None else recorded_size,
            mkdate=old.mkdate if old else self.clock, chdate=self.clock, owner_name="Prof. Müller",
            link=f"{LINK_HOST}/lectures/{ref_id}.mp4?sig=abc" if link else None, downloadable=downloadable)
        self.content[ref_id] = content
        return self.refs[path]

    def publish(self, files: Mapping[str, bytes]) -> None:
        for path in list(self.refs):
            if path not in files:
                del self.content[self.refs.pop(path).id]
        for path, content in files.items():
            self.put(path, content)

    def resource(self, ref: FileRef) -> dict:
        return file_ref_resource(ref, self.viewer, hex_id("user", USERNAME), NOW)

    # --- hooks of tests.lms_contract ---------------------------------------------------------

    secret = PASSWORD
    env = {"STUDIP_USER": USERNAME, "STUDIP_PASSWORD": PASSWORD}
    now = NOW

    @staticmethod
    def course_table() -> dict:
        return {"source": "studip", "url": BASE, "course_id": COURSE,
                "username_env": "STUDIP_USER", "password_env": "STUDIP_PASSWORD"}

    def open_later(self, path: str, at: datetime) -> None:
        self.folder(path, "TimedFolder", permission=7, start_time=unix(at), end_time=0)

    def close_folder(self, path: str) -> None:
        self.folder(path, "HiddenFolder")

    def fail_page(self, number: int, answers: list) -> None:
        route = f"folders/{self.folders[''].id}/file-refs"
        self.injected[(route, (number - 1) * self.page_limit)] = list(answers)

    @staticmethod
    def reject(connector: StudipConnector) -> str:
        connector.env = {"STUDIP_USER": USERNAME, "STUDIP_PASSWORD": "Wrong-Pw-Value-77"}
        return "Wrong-Pw-Value-77"

    def connector(self, **options) -> StudipConnector:
        opts = StudipOptions(url=BASE + "/", course_id=COURSE, username_env="STUDIP_USER",
                             password_env="STUDIP_PASSWORD", **options)
        opts.validate()
        username, password = self.account
        connector = StudipConnector(opts, course="info1", env={"STUDIP_USER": username, "STUDIP_PASSWORD": password})
        connector.now = lambda: NOW
        connector.sleeps = []
        connector.sleep = connector.sleeps.append
        return connector

    # --- Stud.IP's side ----------------------------------------------------------------------

    def _authorized(self, request) -> bool:
        import base64
        # Stud.IP compares the bytes PHP hands it (PHP_AUTH_USER/PW) with its UTF-8 accounts.
        expected = "Basic " + base64.b64encode(":".join(self.account).encode("utf-8")).decode()
        return request.headers.get("Authorization") == expected

    def _collection(self, request):
        self.requests.append(request)
        if not self._authorized(request):
            return 401, {"WWW-Authenticate": 'Basic realm="Stud.IP JSON-API"', "Content-Type": "application/vnd.api+json"}, \
                json.dumps({"errors": [{"status": "401", "title": "Unauthorized"}]})
        if self.login_page:
            return 200, {"Content-Type": "text/html;charset=utf-8"}, "<!DOCTYPE html><html><title>Stud.IP - Login</title></html>"
        parts = urlsplit(request.url)
        route = parts.path[len(urlsplit(API).path) + 1:]
        query = parse_qs(parts.query)
        offset = int(query.get("page[offset]", ["0"])[0])
        limit = min(int(query.get("page[limit]", ["30"])[0]), self.page_limit)
        canned = self.injected.get((route, offset))
        if canned:
            return canned.pop(0)
        owner = hex_id("user", USERNAME)
        if route.startswith("courses/"):  # a student is listed the folders it can see
            items = [folder_resource(folder, self.viewer, owner, NOW) for folder in self.folders.values()
                     if folder.visible(self.viewer, NOW)]
        else:
            folder_id = route.split("/")[1]
            items = [self.resource(ref) for ref in self.refs.values() if ref.folder.id == folder_id]
        total = len(items)

        def link(at: int) -> str:
            return f"{API}/{route}?" + urlencode({"page[offset]": at, "page[limit]": limit})

        links = {"first": link(0), "last": link(max(0, (total // limit - 1) * limit) if limit else 0)}
        if offset - limit >= 0:
            links["prev"] = link(offset - limit)
        if total > offset + limit:
            links["next"] = link(offset + limit)
        document = {"meta": {"page": {"offset": offset, "limit": limit, "total": total}},
                    "links": links, "data": items[offset:offset + limit]}
        return 200, {"Content-Type": "application/vnd.api+json"}, json.dumps(document)

    def _content(self, request):
        self.requests.append(request)
        if not self._authorized(request):
            return 401, {"Content-Type": "application/vnd.api+json"}, json.dumps({"errors": [{"status": "401"}]})
        ref_id = urlsplit(request.url).path.split("/")[-2]
        if ref_id not in self.content:
            return 404, {"Content-Type": "application/vnd.api+json"}, \
                json.dumps({"errors": [{"status": "404", "title": "Not Found"}]})
        ref = next(r for r in self.refs.values() if r.id == ref_id)
        if ref.link:
            return 302, {"Location": ref.link}, ""
        body = self.content[ref_id]
        return 200, {"Content-Type": "application/octet-stream", "ETag": f'"{hashlib.md5(body).hexdigest()} 1 {len(body)}"',
                     "Content-Disposition": "attachment; filename=x", "Cache-Control": "private"}, body

    def _linked(self, request):
        self.link_host_requests.append(request)
        ref_id = urlsplit(request.url).path.rsplit("/", 1)[-1].split(".")[0]
        return 200, {"Content-Type": "video/mp4"}, self.content[ref_id]


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
