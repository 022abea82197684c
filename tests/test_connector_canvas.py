"""The Canvas connector against a `responses` fake of the Canvas Files API whose answers are
built by canvas-lms's own serializers, ported field by field in
tests/fixtures/canvas/serializers.py (`attachment_json` in lib/api/v1/attachment.rb,
`folder_json` in lib/api/v1/folders.rb, `locked_json` in lib/api/v1/locked.rb, the
models' `locked_for?`/`hidden?`/`currently_locked`, and which items a student's token is
listed at all). The fake answers for a teacher's token (every file, unpublished ones with
their download `url`) or a student's; `Link` header pagination with opaque bookmarks, and
download URLs that redirect to a separate files host.
"""
from __future__ import annotations

import base64
import itertools
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Mapping
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from connectors import SourceError
from connectors.canvas import CanvasConnector, CanvasOptions
from f2git.config import ConfigError, parse
from tests.conformance import read_all
from tests.fixtures.canvas.serializers import (STUDENT, TEACHER, Attachment, Folder, attachment_json, folder_json,
                                               listed_files, listed_folders)
from tests.lms_contract import LmsConformance, LmsContract, listed

BASE = "https://canvas.example.edu"
FILES_HOST = "https://inst-fs-iad-prod.inscloudgate.net"
COURSE = 4242
TOKEN = "7~CanvasSecretTOKEN-q9w8e7r6"
NOW = datetime(2026, 11, 21, 23, 0, tzinfo=timezone.utc)
SECRET_NAME = "exam-solutions.ipynb"


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeCanvas:
    """The part of Canvas f2git talks to, for one course."""

    def __init__(self, mock: responses.RequestsMock):
        self.mock = mock
        self.page_size = 2
        self.ids = itertools.count(1001)
        self.clock = NOW - timedelta(days=30)  # when the instructor's edits happen
        self.folders: dict[str, Folder] = {}  # path ("" = root) → folder
        self.viewer = TEACHER  # whose token the connector's requests carry
        self.files: dict[str, Attachment] = {}  # path → file
        self.content: dict[int, bytes] = {}  # file id → bytes
        self.injected: dict[tuple[str, int], list] = {}  # (endpoint, page) → canned answers served first
        self.login_page = False
        self.rate_limit_remaining = "700.0"
        self.api_requests: list = []
        self.file_host_requests: list = []
        self.root = self._folder("", None)
        api = re.compile(rf"{re.escape(BASE)}/api/v1/courses/{COURSE}/(files|folders)(\?.*)?$")
        mock.add_callback(responses.GET, api, callback=self._api)
        mock.add_callback(responses.GET, re.compile(rf"{re.escape(BASE)}/files/\d+/download.*"),
                          callback=self._download)
        mock.add_callback(responses.GET, re.compile(rf"{re.escape(FILES_HOST)}/.*"), callback=self._file_host)
        mock.add(responses.GET, f"{BASE}/login/saml", body="<!DOCTYPE html><html><body>Log in</body></html>",
                 content_type="text/html; charset=utf-8")

    # --- the instructor's side -------------------------------------------------------------

    def _tick(self) -> str:
        self.clock += timedelta(minutes=7)
        return iso(self.clock)

    def _folder(self, path: str, parent: Folder | None) -> Folder:
        name = path.rsplit("/", 1)[-1] if path else "course files"
        stamp = self._tick()
        folder = Folder(id=next(self.ids), name=name, parent=parent, context_id=COURSE, created_at=stamp,
                        updated_at=stamp, position=len(self.folders) + 1)
        self.folders[path] = folder
        return folder

    def folder(self, path: str) -> Folder:
        if path not in self.folders:
            parent = self.folder(path.rsplit("/", 1)[0] if "/" in path else "")
            self._folder(path, parent)
        return self.folders[path]

    def put(self, path: str, content: bytes, **settings) -> Attachment:
        """Upload (or replace) a file, as the instructor does in the Files page."""
        folder_path, _, name = path.rpartition("/")
        folder = self.folder(folder_path)
        old = self.files.get(path)
        if old is not None and self.content[old.id] == content and not settings:
            return old
        file_id = old.id if old else next(self.ids)
        stamp = self._tick()
        self.files[path] = Attachment(id=file_id, uuid=f"uuid{file_id}x8W3kqZ", folder=folder, display_name=name,
                                      size=len(content), created_at=old.created_at if old else stamp,
                                      updated_at=stamp, modified_at=stamp)
        self.files[path].update(**settings)
        self.content[file_id] = content
        return self.files[path]

    def publish(self, files: Mapping[str, bytes]) -> None:
        for path in list(self.files):
            if path not in files:
                del self.content[self.files.pop(path).id]
        for path, content in files.items():
            self.put(path, content)

    # --- hooks of tests.lms_contract ---------------------------------------------------------

    secret = TOKEN
    env = {"CANVAS_TOKEN": TOKEN}
    now = NOW

    @staticmethod
    def course_table() -> dict:
        return {"source": "canvas", "url": BASE, "course_id": COURSE, "token_env": "CANVAS_TOKEN"}

    def open_later(self, path: str, at: datetime) -> None:
        self.folders[path].update(unlock_at=iso(at))

    def close_folder(self, path: str) -> None:
        self.folders[path].update(locked=True)

    def fail_page(self, number: int, answers: list) -> None:
        self.injected[("files", number)] = list(answers)

    @staticmethod
    def reject(connector: CanvasConnector) -> str:
        connector.env = {"CANVAS_TOKEN": "7~WrongTokenValue-zzz"}
        return "7~WrongTokenValue-zzz"

    def connector(self, **options) -> CanvasConnector:
        opts = CanvasOptions(url=BASE, course_id=COURSE, token_env="CANVAS_TOKEN", **options)
        opts.validate()
        connector = CanvasConnector(opts, course="cs101", env={"CANVAS_TOKEN": TOKEN})
        connector.now = lambda: NOW
        connector.sleeps = []
        connector.sleep = connector.sleeps.append
        return connector

    # --- Canvas's side -----------------------------------------------------------------------

    def _api(self, request):
        self.api_requests.append(request)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {"WWW-Authenticate": 'Bearer realm="canvas-lms"'}, \
                json.dumps({"errors": [{"message": "Invalid access token."}]})
        if self.login_page:
            return 302, {"Location": f"{BASE}/login/saml"}, ""
        parts = urlsplit(request.url)
        kind = parts.path.rsplit("/", 1)[-1]
        query = parse_qs(parts.query)
        bookmark = query.get("page", ["first"])[0]
        offset = 0 if bookmark == "first" else json.loads(base64.urlsafe_b64decode(bookmark[len("bookmark:"):]))[0]
        page_number = offset // self.page_size + 1
        canned = self.injected.get((kind, page_number))
        if canned:
            return canned.pop(0)
        if kind == "files":
            items = [attachment_json(file, self.viewer, BASE, NOW)
                     for file in listed_files(list(self.files.values()), self.viewer, NOW)]
        else:
            items = [folder_json(folder, self.viewer, BASE, NOW)
                     for folder in listed_folders(list(self.folders.values()), self.viewer, NOW)]
        page = items[offset:offset + self.page_size]
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "X-Rate-Limit-Remaining": self.rate_limit_remaining, "X-Request-Cost": "0.9"}
        links = [f'<{self._page_url(kind, offset)}>; rel="current"']
        if offset + self.page_size < len(items):
            links.append(f'<{self._page_url(kind, offset + self.page_size)}>; rel="next"')
        links.append(f'<{self._page_url(kind, 0)}>; rel="first"')
        headers["Link"] = ",".join(links)
        return 200, headers, json.dumps(page)

    @staticmethod
    def _page_url(kind: str, offset: int) -> str:
        token = base64.urlsafe_b64encode(json.dumps([offset]).encode()).decode()
        return f"{BASE}/api/v1/courses/{COURSE}/{kind}?page=bookmark:{token}&per_page=100"

    def _download(self, request):
        file_id = int(urlsplit(request.url).path.split("/")[2])
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {}, json.dumps({"errors": [{"message": "Invalid access token."}]})
        if file_id not in self.content:
            return 404, {"Content-Type": "application/json"}, \
                json.dumps({"errors": [{"message": "The specified resource does not exist."}]})
        return 302, {"Location": f"{FILES_HOST}/files/{file_id}/blob?token=signed-{file_id}&download=1"}, ""

    def _file_host(self, request):
        self.file_host_requests.append(request)
        file_id = int(urlsplit(request.url).path.split("/")[2])
        if file_id not in self.content:
            return 404, {}, "gone"
        return 200, {"Content-Type": "application/octet-stream"}, self.content[file_id]


@pytest.fixture
def fake():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeCanvas(mock)


class TestCanvasLmsContract(LmsContract):
    credential_hint = "$CANVAS_TOKEN"


class TestCanvasConformance(LmsConformance):
    pass


# --- release rules ------------------------------------------------------------------------

FUTURE = NOW + timedelta(days=3)
PAST = NOW - timedelta(days=3)

UNRELEASED = {
    "file hidden (only with link)": ("file", {"hidden": True}),
    "file unpublished": ("file", {"locked": True}),
    "file unlocks later": ("file", {"unlock_at": iso(FUTURE)}),
    "file locked since": ("file", {"lock_at": iso(PAST)}),
    "folder hidden": ("folder", {"hidden": True}),
    "folder unpublished": ("folder", {"locked": True}),
    "folder unlocks later": ("folder", {"unlock_at": iso(FUTURE)}),
    "folder locked since": ("folder", {"lock_at": iso(PAST)}),
    "folder for submissions": ("folder", {"for_submissions": True}),
    "top folder unpublished": ("top", {"locked": True}),
}
RELEASED_FILE = {"hidden": False, "locked": False, "unlock_at": None, "lock_at": None, "module_locked": False}
RELEASED_FOLDER = {"hidden": False, "locked": False, "unlock_at": None, "lock_at": None, "for_submissions": False}


@pytest.mark.parametrize("viewer", [TEACHER, STUDENT])
@pytest.mark.parametrize("case", sorted(UNRELEASED))
def test_unreleased_files_appear_nowhere(fake, case, viewer):
    """Whose token it is, Canvas's answer differs (a teacher's lists everything, with URLs);
    the released files are the same."""
    target, settings = UNRELEASED[case]
    fake.viewer = viewer
    fake.publish({"README.md": b"hi", "exams/notes.txt": b"n", f"exams/sub/{SECRET_NAME}": b"{}"})
    secret = fake.files[f"exams/sub/{SECRET_NAME}"]
    {"file": secret, "folder": fake.folders["exams/sub"], "top": fake.folders["exams"]}[target].update(**settings)
    listing = fake.connector().list({})
    paths = sorted(entry.path for entry in listing.entries)
    assert SECRET_NAME not in json.dumps([paths, [s.path for s in listing.skipped], listing.state])
    assert "README.md" in paths
    assert ("exams/notes.txt" in paths) == (target != "top")
    # Released again, the file is listed: the rule above is what held it back.
    secret.update(**RELEASED_FILE)
    for path in ("exams", "exams/sub"):
        fake.folders[path].update(**RELEASED_FOLDER)
    assert f"exams/sub/{SECRET_NAME}" in listed(fake.connector())


def test_a_module_requirement_is_per_student_and_only_a_student_token_shows_it(fake):
    """Canvas's teacher view carries no module lock (locked_for? is false for :read_as_admin):
    a module prerequisite holds a file back only from a student token (README, Canvas)."""
    fake.publish({"week1/lab.ipynb": b"{}"})
    fake.files["week1/lab.ipynb"].update(module_locked=True)
    assert set(listed(fake.connector())) == {"week1/lab.ipynb"}
    fake.viewer = STUDENT
    assert listed(fake.connector()) == {}


def test_a_teacher_token_gets_the_url_of_an_unpublished_file_and_the_connector_withholds_it(fake):
    fake.publish({"draft.ipynb": b"{}", "ok.txt": b"ok"})
    fake.files["draft.ipynb"].update(locked=True)
    answer = attachment_json(fake.files["draft.ipynb"], TEACHER, BASE, NOW)
    assert answer["url"] and answer["locked"] and not answer["locked_for_user"]  # Canvas's teacher view
    assert set(listed(fake.connector())) == {"ok.txt"}


def test_released_inside_the_availability_window(fake):
    fake.put("week1/lab.ipynb", b"{}", unlock_at=iso(PAST), lock_at=iso(FUTURE))
    fake.folders["week1"].update(unlock_at=iso(PAST - timedelta(days=1)))
    assert set(listed(fake.connector())) == {"week1/lab.ipynb"}


def test_include_hidden_releases_link_only_files_and_folders_but_not_unpublished_ones(fake):
    fake.put("links/slides.pdf", b"%PDF", hidden=True)
    fake.folders["links"].update(hidden=True)
    fake.put("links/draft.pdf", b"%PDF", locked=True)
    fake.put("later.txt", b"x", hidden=True, unlock_at=iso(FUTURE))
    assert listed(fake.connector()) == {}
    assert set(listed(fake.connector(include_hidden=True))) == {"links/slides.pdf"}


# --- the folder option -------------------------------------------------------------------

def test_folder_option_releases_that_folder_alone_as_the_root(fake):
    fake.publish({"README.md": b"r", "week1/data/x.csv": b"1", "week1/data/raw/y.csv": b"2",
                  "week1/intro.ipynb": b"{}"})
    connector = fake.connector(folder="/week1/data/")
    assert set(listed(connector)) == {"x.csv", "raw/y.csv"}
    assert read_all(connector, listed(connector)["raw/y.csv"]) == b"2"


# --- paging, errors, throttling ------------------------------------------------------------

def test_listing_follows_every_page(fake):
    files = {f"f{i:02}.txt": bytes([i]) for i in range(11)}
    fake.publish(files)
    assert set(listed(fake.connector())) == set(files)
    pages = [r for r in fake.api_requests if "/files" in r.url]
    assert len(pages) == 6  # 11 files, 2 per page
    assert all("per_page=100" in r.url for r in pages)


@pytest.mark.parametrize("throttle", [
    (403, {"Content-Type": "text/plain"}, "403 Forbidden (Rate Limit Exceeded)\n"),
    (429, {"Retry-After": "3"}, "Too Many Requests"),
])
def test_throttling_backs_off_then_succeeds(fake, throttle):
    fake.publish({f"f{i}.txt": b"x" for i in range(5)})
    fake.injected[("folders", 1)] = [throttle, throttle]
    connector = fake.connector()
    assert len(listed(connector)) == 5
    assert len(connector.sleeps) == 2 and all(s > 0 for s in connector.sleeps)
    if throttle[0] == 429:
        assert min(connector.sleeps) >= 3  # Retry-After honoured


def test_a_nearly_empty_rate_limit_bucket_slows_requests_down(fake):
    fake.publish({"a.txt": b"a"})
    fake.rate_limit_remaining = "35.5"
    connector = fake.connector()
    listed(connector)
    assert connector.sleeps and all(s > 0 for s in connector.sleeps)
    fake.rate_limit_remaining = "650.0"
    calm = fake.connector()
    listed(calm)
    assert calm.sleeps == []


@pytest.mark.parametrize("answer", [{"errors": []}, [{"name": "week1", "parent_folder_id": None}]])
def test_answers_not_shaped_like_the_files_api_are_a_source_error(fake, answer):
    fake.publish({"a.txt": b"a"})
    fake.injected[("folders", 1)] = [(200, {"Content-Type": "application/json"}, json.dumps(answer))]
    with pytest.raises(SourceError, match="expected a list|unexpected shape"):
        fake.connector().list({})


# --- downloads ----------------------------------------------------------------------------

def test_download_follows_the_redirect_without_sending_the_token_to_the_files_host(fake):
    fake.publish({"week1/data.bin": bytes(range(256)) * 40})
    connector = fake.connector()
    entry = listed(connector)["week1/data.bin"]
    assert read_all(connector, entry) == bytes(range(256)) * 40
    (files_request,) = fake.file_host_requests
    assert "Authorization" not in files_request.headers
    assert TOKEN not in files_request.url
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in fake.api_requests)


def test_download_that_breaks_off_is_an_error(fake):
    fake.publish({"a.bin": b"x" * 1000})
    connector = fake.connector()
    entry = listed(connector)["a.bin"]
    fake.content[fake.files["a.bin"].id] = b"x" * 10  # the files host sends less than Canvas said
    with pytest.raises(SourceError, match="expected 1000"):
        read_all(connector, entry)


# --- versions and release times -----------------------------------------------------------

def test_next_release_is_the_earliest_future_unlock_of_a_file_that_will_be_visible(fake):
    fake.publish({"now.txt": b"n"})
    fake.put("soon.txt", b"s", unlock_at=iso(NOW + timedelta(hours=5)))
    fake.put("later/a.txt", b"l")
    fake.folders["later"].update(unlock_at=iso(NOW + timedelta(hours=2)))
    fake.put("later/b.txt", b"l", unlock_at=iso(NOW + timedelta(hours=1)))  # waits for its folder
    fake.put("never.txt", b"x", locked=True, unlock_at=iso(NOW + timedelta(minutes=5)))
    fake.put("closes.txt", b"x", unlock_at=iso(NOW + timedelta(hours=1)), lock_at=iso(NOW + timedelta(minutes=30)))
    fake.put("old.txt", b"x", unlock_at=iso(PAST))
    connector = fake.connector()
    listing = connector.list({})
    assert {e.path for e in listing.entries} == {"now.txt", "old.txt"}
    assert listing.next_release == NOW + timedelta(hours=2)
    assert listing.next_release.tzinfo is not None
    connector.now = lambda: NOW + timedelta(hours=2)
    later = connector.list({})
    assert {e.path for e in later.entries} == {"now.txt", "old.txt", "later/a.txt", "later/b.txt"}
    assert later.next_release == NOW + timedelta(hours=5)


def test_next_release_with_a_student_token_that_sees_upcoming_files_as_locked_for_it(fake):
    fake.viewer = STUDENT
    fake.publish({"now.txt": b"n"})
    fake.put("soon.txt", b"s", unlock_at=iso(NOW + timedelta(hours=4)))
    fake.put("prereq.txt", b"p", module_locked=True)
    assert attachment_json(fake.files["soon.txt"], STUDENT, BASE, NOW)["url"] == ""  # Canvas's student view
    listing = fake.connector().list({})
    assert [e.path for e in listing.entries] == ["now.txt"]
    assert listing.next_release == NOW + timedelta(hours=4)


def test_nothing_to_come_means_no_next_release(fake):
    fake.publish({"a.txt": b"a"})
    assert fake.connector().list({}).next_release is None


# --- configuration ------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["7~Tök€n", "7~token with space", "7~token\r\nX-Evil: 1", "7~caf\udce9"])
def test_a_token_no_canvas_issues_is_a_clear_error_and_never_sent(fake, token):
    """Canvas tokens are printable ASCII; anything else is a copy error, said in words."""
    fake.publish({"a.txt": b"a"})
    connector = fake.connector()
    connector.env = {"CANVAS_TOKEN": token}
    with pytest.raises(SourceError, match=r"access token in \$CANVAS_TOKEN holds") as caught:
        connector.list({})
    assert token not in str(caught.value) and fake.api_requests == []


def test_config_table_builds_validated_options(tmp_path):
    table = {"courses": {"cs101": {"source": "canvas", "url": BASE, "course_id": COURSE,
                                   "token_env": "CANVAS_TOKEN", "folder": "week1", "include_hidden": True}}}
    config = parse(table, tmp_path / "f2git.toml", {"CANVAS_TOKEN": TOKEN})
    options = config.courses["cs101"].options
    assert (options.url, options.course_id, options.folder, options.include_hidden) == (BASE, COURSE, "week1", True)
    with pytest.raises(ConfigError, match="CANVAS_TOKEN"):
        parse(table, tmp_path / "f2git.toml", {})
    bad = {"courses": {"cs101": {"source": "canvas", "url": "canvas.example.edu", "course_id": "1",
                                 "token_env": "CANVAS_TOKEN"}}}
    with pytest.raises(ConfigError, match="key 'url'"):
        parse(bad, tmp_path / "f2git.toml", {"CANVAS_TOKEN": TOKEN})
