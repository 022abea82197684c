"""Canvas LMS: the files of a course, as a student would see them.

Reads with any token. A teacher or TA token sees everything, so the release rules are
applied here: a file is released only if it and every folder above it are published
(`locked` false), not "only available with link" (`hidden`, unless `include_hidden`),
inside their availability window (`unlock_at`/`lock_at`), and not locked or hidden for
the token's user; locked files have an empty `url`. A test-student token gets the same
result from Canvas itself.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Callable, Iterator, Mapping

import requests

from ._http import SessionConnector, SourceSession, bearer, where
from ._lms import FolderTree, Release, api_shape, credentials_hint, utc_now, window
from ._time import iso_time
from .base import Connector, Entry, Listing, SourceError, in_words
from .roster import (ACTIVE, COMPLETED, DELETED, INACTIVE, INSTRUCTOR, INVITED, LEARNER, OBSERVER, OTHER, TA,
                     Enrolment, RosterCollector, hub_name)

# Canvas's leaky bucket starts at 700 units; below this we slow down before it throttles.
RATE_LIMIT_LOW = 100.0
RATE_LIMIT_PAUSE = 2.0  # s

# Rosters (the enrollments API): an enrolment's base `type` decides (custom roles keep theirs).
ROSTER_ROLES = {"StudentEnrollment": LEARNER, "TeacherEnrollment": INSTRUCTOR, "DesignerEnrollment": INSTRUCTOR,
                "TaEnrollment": TA, "ObserverEnrollment": OBSERVER, "StudentViewEnrollment": OTHER}
ROSTER_STATES = {"active": ACTIVE, "invited": INVITED, "creation_pending": INVITED, "inactive": INACTIVE,
                 "completed": COMPLETED, "deleted": DELETED, "rejected": DELETED}
# Canvas's default listing mixes states; these are asked for by name, and only "active" counts.
ROSTER_ASKED_STATES = ("active", "invited", "inactive", "completed")
HUB_USERNAME_FIELDS = ("login_id", "email", "sis_user_id", "id")
# The account permission without which Canvas leaves a field out of every user record.
FIELD_PERMISSIONS = {"login_id": "Users - view login IDs", "sis_user_id": "SIS Data - read",
                     "email": "Users - view primary email address"}


@dataclass
class CanvasOptions:
    url: str = ""
    course_id: int | str = ""
    token_env: str = ""
    folder: str = ""
    include_hidden: bool = False

    def validate(self) -> None:
        if not self.url:
            raise ValueError("missing key 'url'")
        if not self.url.startswith(("https://", "http://")):
            raise ValueError(f"key 'url': expected an http(s) URL like https://canvas.example.edu, got {self.url!r}")
        if self.course_id in ("", None):
            raise ValueError("missing key 'course_id'")
        if not str(self.course_id).strip():
            raise ValueError("key 'course_id': must not be empty")
        if not self.token_env:
            raise ValueError("missing key 'token_env'")


class CanvasConnector(SessionConnector, Connector):
    source = "canvas"
    label = "Canvas"
    roster_fields = HUB_USERNAME_FIELDS
    Options = CanvasOptions

    @classmethod
    def describe(cls, options: CanvasOptions) -> str:
        return in_words(where(options.url), f"course {options.course_id}", options.folder and f"folder {options.folder}")

    # Injectable for tests: the clock and the sleep used for retries and pacing.
    now: Callable[[], datetime] = staticmethod(utc_now)
    sleep: Callable[[float], None] = staticmethod(time.sleep)

    def __init__(self, options: CanvasOptions, **kwargs: Any):
        super().__init__(options, **kwargs)
        self.base_url = options.url.rstrip("/")

    def make_session(self) -> SourceSession:
        token = self.secret(self.options.token_env)
        session = SourceSession(self.label, self.base_url, headers=bearer(token, self.options.token_env),
                                secrets=(token,), sleep=lambda seconds: self.sleep(seconds))
        session.session.hooks["response"].append(self._pace)
        return session

    def _pace(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Slow down while Canvas's rate-limit bucket is nearly empty, before it answers 403."""
        try:
            remaining = float(response.headers.get("X-Rate-Limit-Remaining", ""))
        except ValueError:
            return
        if remaining < RATE_LIMIT_LOW:
            self.sleep(RATE_LIMIT_PAUSE)

    def api(self, path: str) -> str:
        return f"{self.base_url}/api/v1/{path}"

    def _token_hint(self):
        return credentials_hint(f"check the access token in ${self.options.token_env}")

    def pages(self, path: str) -> Iterator[dict]:
        with self._token_hint():
            for page in self.session.link_pages(self.api(path), params={"per_page": 100}):
                if not isinstance(page, list):
                    raise self.session.fail(f"expected a list from /api/v1/{path}, got {type(page).__name__}")
                yield from page

    def list(self, state: Mapping[str, Any]) -> Listing:
        with api_shape(self.label):
            return self._list()

    def _list(self) -> Listing:
        course = str(self.options.course_id).strip()
        # Files first: a folder created meanwhile is then in the folder list, never missing.
        files = list(self.pages(f"courses/{course}/files"))
        tree = FolderTree({folder["id"]: folder for folder in self.pages(f"courses/{course}/folders")},
                          parent=lambda folder: folder.get("parent_folder_id"), name=lambda folder: folder["name"],
                          label=self.label, course=course)
        top = tree.top(self.options.folder)
        now = self.now()
        listing = Listing()
        upcoming: list[datetime] = []
        for file in files:
            folder_id = file.get("folder_id")
            if folder_id not in tree.paths or not tree.below(folder_id, top):
                continue  # outside the released folder, or in one the token cannot see
            release = self._release([file, *(tree.folders[above] for above in tree.chain(folder_id))], now)
            if not release.visible:
                if release.at is not None:
                    upcoming.append(release.at)
                continue
            if not file.get("url"):
                continue  # Canvas withholds the download URL of locked files
            relative = tree.relative(folder_id, top)
            name = file.get("display_name") or file.get("filename")
            path = f"{relative}/{name}" if relative else name
            version = f"{file['id']}:{file.get('modified_at') or ''}:{file.get('updated_at') or ''}:{file.get('size')}"
            size = file.get("size")
            listing.entries.append(Entry(path, size if isinstance(size, int) else None, version, ref=file["url"]))
        listing.entries.sort(key=lambda entry: entry.path)
        listing.next_release = min(upcoming, default=None)
        return listing

    def _release(self, items: list[dict], now: datetime) -> Release:
        """Apply Canvas's rules to a file and its folders: every one of them must allow it."""
        opens: list[datetime] = []
        closes: list[datetime] = []
        for item in items:
            if item.get("locked") or item.get("for_submissions"):
                return Release.NEVER
            if (item.get("hidden") or item.get("hidden_for_user")) and not self.options.include_hidden:
                return Release.NEVER
            try:
                unlock_at, lock_at = iso_time(item.get("unlock_at")), iso_time(item.get("lock_at"))
            except ValueError:
                return Release.NEVER  # an unreadable date never releases anything
            # A student token sees locked_for_user until unlock_at; that one is still upcoming.
            if item.get("locked_for_user") and not (unlock_at and unlock_at > now):
                return Release.NEVER
            if unlock_at is not None:
                opens.append(unlock_at)
            if lock_at is not None:
                closes.append(lock_at)
        return window(opens, closes, now)

    def read_roster(self, hub_username: str = "") -> list[Enrolment]:
        """The course's enrolments (`GET /api/v1/courses/:id/enrollments`, Link pages), named by
        the user field `hub_username` (default login_id)."""
        field = hub_username or "login_id"
        if field not in HUB_USERNAME_FIELDS:
            raise SourceError(f"Canvas: hub_username {field!r} is not one of {', '.join(HUB_USERNAME_FIELDS)}")
        course = str(self.options.course_id).strip()
        params: list[tuple[str, Any]] = [("per_page", 100)] + [("state[]", state) for state in ROSTER_ASKED_STATES]
        if field == "email":
            params.append(("include[]", "email"))
        collected = RosterCollector(self.label)
        with self._token_hint(), api_shape(self.label):
            for page in self.session.link_pages(self.api(f"courses/{course}/enrollments"), params=params):
                if not isinstance(page, list):
                    raise self.session.fail(f"expected a list of enrollments, got {type(page).__name__}")
                for item in page:
                    user = item.get("user") or {}
                    collected.add(Enrolment(str(item["user_id"]), hub_name(user.get(field)),
                                            ROSTER_ROLES.get(item.get("type"), OTHER),
                                            ROSTER_STATES.get(item.get("enrollment_state"), INACTIVE)),
                                  field_present=field in user)
        if field in FIELD_PERMISSIONS and collected.field_hidden():
            raise SourceError(f"Canvas: the token may not see users' {field} (hub_username): give the token's"
                              f" account the permission \"{FIELD_PERMISSIONS[field]}\" in the course's account,"
                              " or pick another hub_username")
        return collected.enrolments

    def open(self, entry: Entry) -> BinaryIO:
        # The URL redirects to a files host; the token stays on the Canvas host (HostBoundAuth).
        with self._token_hint():
            return self.session.open_stream(entry.ref, expected_size=entry.size)

