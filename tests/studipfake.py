"""A `responses` fake of Stud.IP's JSON:API for one course, whose resources are built as
Stud.IP's own schema classes build them (lib/classes/JsonApi/Schemas/Folder.php and
FileRef.php: attributes, relationships, meta), with each folder type's visibility rules from
lib/filesystem/*Folder.php, ported in tests/fixtures/studip/schemas.py, for a lecturer's
account (what f2git uses) or a student's.

The fake serves every folder of the course in one flat collection (`courses/{id}/folders`,
top folder included, with `parent` relationships), `folders/{id}/file-refs`, offset paging
with `meta.page` and `links`, and `file-refs/{id}/content` with an ETag, or a redirect for
linked files (FileRefsContentShow.php).

`FakeStudip` has the hooks tests/lms_contract.py asks of an LMS fake.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Mapping
from urllib.parse import parse_qs, urlencode, urlsplit

import responses

from connectors.studip import StudipConnector, StudipOptions
from tests.fixtures.studip.schemas import (LECTURER, FileRef, Folder, file_ref_resource, folder_resource,
                                           membership_resource, user_resource)

BASE = "https://studip.example.de"
API = f"{BASE}/jsonapi.php/v1"
LINK_HOST = "https://media.example.org"
COURSE = "a07535cf2f8a72df33c12ddfa4b53dde"
USERNAME = "dozent.mueller"
PASSWORD = "Stud!P-Secret-Pw-5531"
NOW = datetime(2026, 11, 21, 23, 0, tzinfo=timezone.utc)


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
        self.members: dict[str, str] = {}  # the course's members: username -> permission (user|autor|tutor|dozent)
        self._folder("", "RootFolder")
        route = re.compile(rf"{re.escape(API)}/(courses/{COURSE}/folders|courses/{COURSE}/memberships"
                           rf"|folders/\w+/file-refs)(\?.*)?$")
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
        included = None
        if route.endswith("/memberships"):
            items = [membership_resource(COURSE, hex_id("user", name), permission, stamp(NOW))
                     for name, permission in self.members.items()]
            if "user" in query.get("include", [""])[0].split(","):
                included = {hex_id("user", name): user_resource(hex_id("user", name), name, f"{name}@uni.example.de")
                            for name in self.members}
        elif route.startswith("courses/"):  # a student is listed the folders it can see
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
        if included is not None:  # the users of this page's memberships
            document["included"] = [included[item["relationships"]["user"]["data"]["id"]] for item in document["data"]]
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
