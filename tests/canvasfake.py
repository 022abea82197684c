"""A `responses` fake of the Canvas Files API for one course, whose answers are built by
canvas-lms's own serializers, ported field by field in tests/fixtures/canvas/serializers.py
(`attachment_json` in lib/api/v1/attachment.rb, `folder_json` in lib/api/v1/folders.rb,
`locked_json` in lib/api/v1/locked.rb, the models' `locked_for?`/`hidden?`/`currently_locked`,
and which items a student's token is listed at all). The fake answers for a teacher's token
(every file, unpublished ones with their download `url`) or a student's; `Link` header
pagination with opaque bookmarks, and download URLs that redirect to a separate files host.

`FakeCanvas` has the hooks tests/lms_contract.py asks of an LMS fake; the `fake` fixture
gives one inside a `responses.RequestsMock`.
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

from connectors.canvas import CanvasConnector, CanvasOptions
from tests.fixtures.canvas.enrollments import CanvasEnrollment, CanvasUser, enrollment_json, listed
from tests.fixtures.canvas.serializers import (TEACHER, Attachment, Folder, attachment_json, folder_json, listed_files,
                                               listed_folders)

BASE = "https://canvas.example.edu"
FILES_HOST = "https://inst-fs-iad-prod.inscloudgate.net"
COURSE = 4242
TOKEN = "7~CanvasSecretTOKEN-q9w8e7r6"
NOW = datetime(2026, 11, 21, 23, 0, tzinfo=timezone.utc)


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
        self.enrollments: list[CanvasEnrollment] = []  # the course's roster (enrollments API)
        self.can_see_logins = True  # the token's account may see login IDs (and read SIS data)
        api = re.compile(rf"{re.escape(BASE)}/api/v1/courses/{COURSE}/(files|folders|enrollments)(\?.*)?$")
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

    def enrol(self, login_id: str | None, role: str = "StudentEnrollment", state: str = "active", *,
              user_id: int | None = None, email: str | None = None, custom_role: str = "") -> CanvasEnrollment:
        """Enrol a user (a new one, or `user_id`'s again in another role) as the teacher does."""
        user = next((e.user for e in self.enrollments if e.user.id == user_id), None) if user_id else None
        if user is None:
            number = user_id or next(self.ids)
            user = CanvasUser(number, f"User {number}", login_id, email or (f"{login_id}@example.edu" if login_id else None),
                              f"SIS{number}")
        enrollment = CanvasEnrollment(next(self.ids), user, role, custom_role, state)
        self.enrollments.append(enrollment)
        return enrollment

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
        if kind == "enrollments":
            email = "email" in query.get("include[]", [])
            items = [enrollment_json(e, COURSE, can_see_logins=self.can_see_logins, can_read_sis=self.can_see_logins,
                                     include_email=email)
                     for e in listed(self.enrollments, query.get("state[]", []))]
        elif kind == "files":
            items = [attachment_json(file, self.viewer, BASE, NOW)
                     for file in listed_files(list(self.files.values()), self.viewer, NOW)]
        else:
            items = [folder_json(folder, self.viewer, BASE, NOW)
                     for folder in listed_folders(list(self.folders.values()), self.viewer, NOW)]
        page = items[offset:offset + self.page_size]
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "X-Rate-Limit-Remaining": self.rate_limit_remaining, "X-Request-Cost": "0.9"}
        # Canvas's page links keep the request's other parameters (filters such as state[])
        kept = "".join(f"&{key}={value}" for key, values in query.items() if key not in ("page", "per_page")
                       for value in values)
        links = [f'<{self._page_url(kind, offset)}{kept}>; rel="current"']
        if offset + self.page_size < len(items):
            links.append(f'<{self._page_url(kind, offset + self.page_size)}{kept}>; rel="next"')
        links.append(f'<{self._page_url(kind, 0)}{kept}>; rel="first"')
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
