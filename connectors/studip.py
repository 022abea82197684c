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
from datetime import datetime, timezone
from typing import Any, BinaryIO, Callable, Iterator, Mapping
from urllib.parse import urljoin

import requests

from ._http import SessionConnector, SourceSession, origin, where
from ._lms import Release, api_shape, credentials_hint, folder_path, utc_now, window
from .base import Connector, Entry, Listing, SourceError, in_words

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


def unix_time(value: Any) -> datetime | None:
    """A TimedFolder's start_time/end_time (Unix seconds, maybe a string); None for 0 = open-ended."""
    seconds = int(value or 0)
    return datetime.fromtimestamp(seconds, timezone.utc) if seconds > 0 else None


class StudipConnector(SessionConnector, Connector):
    source = "studip"
    label = "Stud.IP"
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
        return SourceSession(self.label, self.api_url, auth=requests.auth.HTTPBasicAuth(username, password),
                             headers={"Accept": "application/vnd.api+json"},
                             secrets=(password,), sleep=lambda seconds: self.sleep(seconds))

    def _credentials_hint(self):
        return credentials_hint(f"check the account in ${self.options.username_env} and ${self.options.password_env}")

    def pages(self, route: str) -> Iterator[dict]:
        """Every resource of a JSON:API collection, page by page (`page[offset]`, `page[limit]`)."""
        url = f"{self.api_url}/{route}"
        params: dict[str, Any] | None = {"page[offset]": 0, "page[limit]": PAGE_LIMIT}
        total: int | None = None
        received = 0
        seen = {url}
        with self._credentials_hint():
            while url:
                document, _ = self.session.get_json(url, params=params)
                data = document.get("data") if isinstance(document, dict) else None
                if not isinstance(data, list):
                    raise self.session.fail(f"expected a JSON:API collection from /{route}")
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
                    params = {"page[offset]": offset, "page[limit]": PAGE_LIMIT} if more else None
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

    def list(self, state: Mapping[str, Any]) -> Listing:
        with api_shape(self.label):
            return self._list()

    def _list(self) -> Listing:
        course = self.options.course_id.strip()
        folders = {folder["id"]: folder for folder in self.pages(f"courses/{course}/folders")}
        parents = {folder_id: ((folder.get("relationships") or {}).get("parent") or {}).get("data")
                   for folder_id, folder in folders.items()}
        parents = {folder_id: parent["id"] if isinstance(parent, dict) else None
                   for folder_id, parent in parents.items()}
        roots = [folder_id for folder_id, parent in parents.items() if parent is None]
        if len(roots) != 1:
            raise self.session.fail(f"course {course} should have one top folder, the API listed {len(roots)}")
        paths = self._paths(folders, parents, roots[0])
        top = self._top(paths, roots[0])
        now = self.now()
        listing = Listing()
        upcoming = []
        for folder_id in sorted(paths, key=paths.get):
            if not self._below(folder_id, top, parents):
                continue
            release = self._release(folder_id, folders, parents, now)
            if release.at is not None:
                upcoming.append(release.at)
            if not release.visible:
                continue
            relative = paths[folder_id][len(paths[top]):].strip("/")
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
        linked = attributes.get("storage") == "url"  # a link to another server: its size is a guess
        size = attributes.get("filesize")
        size = size if isinstance(size, int) and not linked else None
        file_data = ((ref.get("relationships") or {}).get("file") or {}).get("data") or {}
        version = f"{ref['id']}:{attributes.get('chdate')}:{attributes.get('filesize')}:{file_data.get('id', '')}"
        path = f"{folder}/{name}" if folder else name
        return Entry(path, size, version, ref=ref["id"])

    @staticmethod
    def _paths(folders: dict[str, dict], parents: dict[str, str | None], root: str) -> dict[str, str]:
        """Folder id → path below the top folder; folders under one the API did not list are left out."""
        paths: dict[str, str] = {root: ""}

        def path_of(folder_id: str, seen: frozenset = frozenset()) -> str | None:
            if folder_id in paths:
                return paths[folder_id]
            parent = parents.get(folder_id)
            if parent is None or parent not in folders or folder_id in seen:
                return None
            above = path_of(parent, seen | {folder_id})
            if above is None:
                return None
            name = (folders[folder_id].get("attributes") or {}).get("name") or folder_id
            paths[folder_id] = f"{above}/{name}" if above else name
            return paths[folder_id]

        for folder_id in folders:
            path_of(folder_id)
        return paths

    def _top(self, paths: dict[str, str], root: str) -> str:
        wanted = folder_path(self.options.folder)
        if not wanted:
            return root
        for folder_id, path in paths.items():
            if path == wanted:
                return folder_id
        raise SourceError(f"Stud.IP: course {self.options.course_id} has no folder {wanted!r} (key 'folder')")

    @staticmethod
    def _below(folder_id: str, top: str, parents: dict[str, str | None]) -> bool:
        current: str | None = folder_id
        for _ in range(len(parents) + 1):
            if current == top:
                return True
            if current is None:
                return False
            current = parents.get(current)
        return False

    def _release(self, folder_id: str, folders: dict[str, dict], parents: dict[str, str | None],
                 now: datetime) -> Release:
        """A folder is released when it and every folder above it let students read it now."""
        opens, closes = [], []
        current: str | None = folder_id
        while current is not None:
            folder = folders[current]
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
            elif kind not in OPEN_TYPES and parents.get(current) is not None:
                return Release.NEVER  # unknown type: its rules are unknown, so it stays closed
            if kind == "TimedFolder":
                try:
                    start, end = unix_time(content.get("start_time")), unix_time(content.get("end_time"))
                except (TypeError, ValueError, OverflowError, OSError):
                    return Release.NEVER
                opens += [start] if start else []
                closes += [end] if end else []
            current = parents.get(current)
        return window(opens, closes, now)

    def open(self, entry: Entry) -> BinaryIO:
        # May redirect (linked files); HostBoundAuth keeps the password on this server.
        with self._credentials_hint():
            return self.session.open_stream(f"{self.api_url}/file-refs/{entry.ref}/content", expected_size=entry.size)

