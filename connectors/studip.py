"""Stud.IP: the files of a course through its JSON:API (`/jsonapi.php/v1`), as students see them.

Reads with a lecturer (or tutor) account, which sees every folder, so the release rules of
Stud.IP's folder types are applied here: homework folders (students' submissions), hidden
folders and group folders are never copied, nor anything below them; a timed folder only
between its start and end time (0 = open-ended); folders with access restrictions only
when students may read them. Folder types f2git does not know are not copied either.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Callable, Iterator, Mapping
from urllib.parse import urljoin

from ._http import SessionConnector, SourceSession, basic_auth, origin, where
from ._lms import FolderTree, Release, api_shape, credentials_hint, utc_now, window
from ._time import epoch_time
from .base import Connector, Entry, Listing, SourceError, in_words
from .roster import ACTIVE, INSTRUCTOR, LEARNER, OTHER, TA, Enrolment, RosterCollector, hub_name

PAGE_LIMIT = 100

# Folder types whose files every course member may read (RootFolder is a course's top folder).
OPEN_TYPES = {"RootFolder", "StandardFolder", "CourseTopicFolder", "CourseDateFolder",
              "CoursePublicFolder", "PublicFolder"}
# Access-restricted types: permission bits for students (x = 1 visible, w = 2, r = 4), fixed
# by the type or read from `data-content.permission` (Stud.IP's default is 7).
FIXED_PERMISSIONS = {"MaterialFolder": 5}
CONFIGURED_PERMISSIONS = {"PermissionEnabledFolder", "TimedFolder"}
# Never copied, whatever their settings: students' submissions, lecturers' hidden folders,
# and folders only one group of students may see.
EXCLUDED_TYPES = {"HomeworkFolder", "HiddenFolder", "CourseGroupFolder"}
VISIBLE, READABLE = 1, 4

# Rosters: a course's memberships (`courses/{id}/memberships`, resources of type course-memberships)
# with their users included; the membership's `permission` is the role in the course.
ROSTER_ROLES = {"user": LEARNER, "autor": LEARNER, "tutor": TA, "dozent": INSTRUCTOR}
HUB_USERNAME_FIELDS = ("username", "email", "id")


@dataclass
class StudipOptions:
    url: str = ""
    course_id: str = ""
    username_env: str = ""
    password_env: str = ""
    folder: str = ""

    def validate(self) -> None:
        if not self.url:
            raise ValueError("missing key 'url'")
        if not self.url.startswith(("https://", "http://")):
            raise ValueError(f"key 'url': expected the installation's http(s) base URL, got {self.url!r}")
        if "jsonapi.php" in self.url:
            raise ValueError("key 'url': give the installation's base URL; f2git appends /jsonapi.php/v1")
        if not self.course_id.strip():
            raise ValueError("missing key 'course_id'")
        for key in ("username_env", "password_env"):
            if not getattr(self, key):
                raise ValueError(f"missing key '{key}'")


def _parent_id(folder: dict) -> str | None:
    parent = ((folder.get("relationships") or {}).get("parent") or {}).get("data")
    return parent["id"] if isinstance(parent, dict) else None


def unix_time(value: Any) -> datetime | None:
    """A TimedFolder's start_time/end_time (Unix seconds, maybe a string); None for 0 = open-ended."""
    seconds = int(value or 0)
    return epoch_time(seconds) if seconds > 0 else None


class StudipConnector(SessionConnector, Connector):
    source = "studip"
    label = "Stud.IP"
    roster_fields = HUB_USERNAME_FIELDS
    Options = StudipOptions

    @classmethod
    def describe(cls, options: StudipOptions) -> str:
        return in_words(where(options.url), f"course {options.course_id}", options.folder and f"folder {options.folder}")

    # Injectable for tests: the clock and the sleep used between retries.
    now: Callable[[], datetime] = staticmethod(utc_now)
    sleep: Callable[[float], None] = staticmethod(time.sleep)

    def __init__(self, options: StudipOptions, **kwargs: Any):
        super().__init__(options, **kwargs)
        self.api_url = options.url.rstrip("/") + "/jsonapi.php/v1"

    def make_session(self) -> SourceSession:
        username = self.secret(self.options.username_env)
        password = self.secret(self.options.password_env)
        return SourceSession(self.label, self.api_url, auth=basic_auth(username, password, self.options.username_env),
                             headers={"Accept": "application/vnd.api+json"},
                             secrets=(password,), sleep=lambda seconds: self.sleep(seconds))

    def _credentials_hint(self):
        return credentials_hint(f"check the account in ${self.options.username_env} and ${self.options.password_env}")

    def pages(self, route: str, query: Mapping[str, str] | None = None,
              included: dict[tuple[str, str], dict] | None = None) -> Iterator[dict]:
        """Every resource of a JSON:API collection, page by page (`page[offset]`, `page[limit]`);
        `query` goes with every page, and `included` collects the documents' included resources."""
        url = f"{self.api_url}/{route}"
        query = dict(query or {})
        params: dict[str, Any] | None = {**query, "page[offset]": 0, "page[limit]": PAGE_LIMIT}
        total: int | None = None
        received = 0
        seen = {url}
        with self._credentials_hint():
            while url:
                document, _ = self.session.get_json(url, params=params)
                data = document.get("data") if isinstance(document, dict) else None
                if not isinstance(data, list):
                    raise self.session.fail(f"expected a JSON:API collection from /{route}")
                if included is not None:
                    for item in document.get("included") or ():
                        if isinstance(item, dict):
                            included[(str(item.get("type")), str(item.get("id")))] = item
                yield from data
                received += len(data)
                page = (document.get("meta") or {}).get("page") or {}
                if "total" in page:
                    if total is not None and page["total"] != total:
                        # Offsets shift when something is added or deleted meanwhile: items could be missed.
                        raise self.session.fail(f"/{route} changed while it was being read; try again")
                    total = int(page["total"])
                    offset = int(page.get("offset", 0)) + int(page.get("limit") or len(data))
                    more = offset < total and bool(data)
                    params = {**query, "page[offset]": offset, "page[limit]": PAGE_LIMIT} if more else None
                    url = url if more else ""
                else:
                    # No page meta: follow links.next, but only on this server (it carries our password).
                    following = (document.get("links") or {}).get("next")
                    following = urljoin(url, following) if isinstance(following, str) and following else ""
                    if following and origin(following) != origin(self.api_url):
                        raise self.session.fail(f"/{route} links its next page on another server; not followed")
                    if following in seen:
                        raise self.session.fail(f"/{route} pagination loops")
                    seen.add(following)
                    url, params = following, None
        if total is not None and received != total:
            raise self.session.fail(f"/{route} sent {received} of {total} items; try again")

    def read_roster(self, hub_username: str = "") -> list[Enrolment]:
        """The course's members, named by the user field `hub_username` (default username)."""
        field = hub_username or "username"
        if field not in HUB_USERNAME_FIELDS:
            raise SourceError(f"Stud.IP: hub_username {field!r} is not one of {', '.join(HUB_USERNAME_FIELDS)}")
        users: dict[tuple[str, str], dict] = {}
        collected = RosterCollector(self.label)
        with api_shape(self.label):
            for membership in self.pages(f"courses/{self.options.course_id}/memberships", {"include": "user"}, users):
                attributes = membership.get("attributes") or {}
                user_ref = ((membership.get("relationships") or {}).get("user") or {}).get("data") or {}
                user_id = str(user_ref["id"])
                user = users.get(("users", user_id), {}).get("attributes") or {}
                value = user_id if field == "id" else user.get(field)
                collected.add(Enrolment(user_id, hub_name(value), ROSTER_ROLES.get(attributes.get("permission"), OTHER),
                                        ACTIVE), field_present=field == "id" or field in user)
        if field != "id" and collected.field_hidden():
            raise SourceError(f"Stud.IP: the account may not see users' {field} (hub_username):"
                              " use a lecturer's account of the course, or pick another hub_username")
        return collected.enrolments

    def list(self, state: Mapping[str, Any]) -> Listing:
        with api_shape(self.label):
            return self._list()

    def _list(self) -> Listing:
        course = self.options.course_id.strip()
        tree = FolderTree({folder["id"]: folder for folder in self.pages(f"courses/{course}/folders")},
                          parent=_parent_id, name=lambda folder: (folder.get("attributes") or {}).get("name") or folder["id"],
                          label=self.label, course=course)
        if tree.root is None:
            raise self.session.fail(f"course {course} should have one top folder, the API listed none")
        top = tree.top(self.options.folder)
        now = self.now()
        listing = Listing()
        upcoming = []
        for folder_id in sorted(tree.paths, key=tree.paths.get):
            if not tree.below(folder_id, top):
                continue
            release = self._release(tree, folder_id, now)
            if release.at is not None:
                upcoming.append(release.at)
            if not release.visible:
                continue
            relative = tree.relative(folder_id, top)
            for ref in self.pages(f"folders/{folder_id}/file-refs"):
                entry = self._entry(ref, relative)
                if entry is not None:
                    listing.entries.append(entry)
        listing.next_release = min(upcoming, default=None)
        return listing

    def _entry(self, ref: dict, folder: str) -> Entry | None:
        attributes = ref.get("attributes") or {}
        # A lecturer may read everything; these say what Stud.IP lets through at all.
        if attributes.get("is-readable") is False or attributes.get("is-downloadable") is False:
            return None
        name = attributes.get("name") or ""
        size = attributes.get("filesize")
        size = size if isinstance(size, int) and size >= 0 else None
        file_data = ((ref.get("relationships") or {}).get("file") or {}).get("data") or {}
        version = f"{ref['id']}:{attributes.get('chdate')}:{attributes.get('filesize')}:{file_data.get('id', '')}"
        path = f"{folder}/{name}" if folder else name
        return Entry(path, size, version, ref=ref["id"])

    @staticmethod
    def _release(tree: FolderTree, folder_id: str, now: datetime) -> Release:
        """A folder is released when it and every folder above it let students read it now."""
        opens, closes = [], []
        for current in tree.chain(folder_id):
            folder = tree.folders[current]
            attributes = folder.get("attributes") or {}
            kind = attributes.get("folder-type") or ""
            content = attributes.get("data-content")
            content = content if isinstance(content, dict) else {}
            if kind in EXCLUDED_TYPES or not attributes.get("is-visible") or not attributes.get("is-readable"):
                return Release.NEVER
            if kind in FIXED_PERMISSIONS or kind in CONFIGURED_PERMISSIONS:
                try:
                    bits = FIXED_PERMISSIONS.get(kind, int(content.get("permission", 7)))
                except (TypeError, ValueError):
                    return Release.NEVER
                if bits & (VISIBLE | READABLE) != VISIBLE | READABLE:
                    return Release.NEVER
            elif kind not in OPEN_TYPES and tree.parents[current] is not None:
                return Release.NEVER  # unknown type: its rules are unknown, so it stays closed
            if kind == "TimedFolder":
                try:
                    start, end = unix_time(content.get("start_time")), unix_time(content.get("end_time"))
                except (TypeError, ValueError, OverflowError, OSError):
                    return Release.NEVER
                opens += [start] if start else []
                closes += [end] if end else []
        return window(opens, closes, now)

    def open(self, entry: Entry) -> BinaryIO:
        # May redirect (linked files); HostBoundAuth keeps the password on this server.
        with self._credentials_hint():
            # Not entry.size: a linked file's `filesize` is what Stud.IP noted when it was linked
            # (FileRef says nothing of links); the download's Content-Length is checked.
            return self.session.open_stream(f"{self.api_url}/file-refs/{entry.ref}/content")

