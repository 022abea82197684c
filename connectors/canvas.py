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
from datetime import datetime, timezone
from typing import Any, BinaryIO, Callable, Iterator, Mapping

import requests

from ._http import SessionConnector, SourceSession, where
from ._lms import Release, api_shape, credentials_hint, folder_path, utc_now, window
from .base import Connector, Entry, Listing, SourceError, in_words

# Canvas's leaky bucket starts at 700 units; below this we slow down before it throttles.
RATE_LIMIT_LOW = 100.0
RATE_LIMIT_PAUSE = 2.0  # s


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time from the API as an aware UTC datetime; None for null/empty."""
    if value in (None, ""):
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


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
        session = SourceSession(self.label, self.base_url, headers={"Authorization": f"Bearer {token}"},
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
        folders = {folder["id"]: folder for folder in self.pages(f"courses/{course}/folders")}
        paths = self._folder_paths(folders)
        top = self._top_folder(folders, paths)
        now = self.now()
        listing = Listing()
        upcoming: list[datetime] = []
        for file in files:
            folder_id = file.get("folder_id")
            if folder_id not in paths or not self._below(folder_id, top, folders):
                continue  # outside the released folder, or in one the token cannot see
            release = self._release([file, *self._chain(folder_id, folders)], now)
            if not release.visible:
                if release.at is not None:
                    upcoming.append(release.at)
                continue
            if not file.get("url"):
                continue  # Canvas withholds the download URL of locked files
            relative = paths[folder_id][len(paths[top]):].strip("/")
            name = file.get("display_name") or file.get("filename")
            path = f"{relative}/{name}" if relative else name
            version = f"{file['id']}:{file.get('modified_at') or ''}:{file.get('updated_at') or ''}:{file.get('size')}"
            size = file.get("size")
            listing.entries.append(Entry(path, size if isinstance(size, int) else None, version, ref=file["url"]))
        listing.entries.sort(key=lambda entry: entry.path)
        listing.next_release = min(upcoming, default=None)
        return listing

    def _folder_paths(self, folders: dict[int, dict]) -> dict[int, str]:
        """Folder id → path below the course's root folder ("" for the root)."""
        paths: dict[int, str] = {}

        def path_of(folder_id: int, depth: int = 0) -> str | None:
            if folder_id in paths:
                return paths[folder_id]
            folder = folders.get(folder_id)
            if folder is None or depth > 100:
                return None
            parent = folder.get("parent_folder_id")
            if parent is None:
                paths[folder_id] = ""
                return ""
            above = path_of(parent, depth + 1)
            if above is None:
                return None
            paths[folder_id] = f"{above}/{folder['name']}" if above else folder["name"]
            return paths[folder_id]

        for folder_id in folders:
            path_of(folder_id)
        return paths

    def _top_folder(self, folders: dict[int, dict], paths: dict[int, str]) -> int | None:
        roots = [folder_id for folder_id, folder in folders.items() if folder.get("parent_folder_id") is None]
        if len(roots) > 1:
            raise self.session.fail(f"course {self.options.course_id} has {len(roots)} root folders, expected one")
        wanted = folder_path(self.options.folder)
        if not wanted:
            return roots[0] if roots else None
        for folder_id, path in paths.items():
            if path == wanted:
                return folder_id
        raise SourceError(f"Canvas: course {self.options.course_id} has no folder {wanted!r} (key 'folder')")

    @staticmethod
    def _chain(folder_id: int, folders: dict[int, dict]) -> list[dict]:
        """The folder and every folder above it, up to the course's root."""
        chain = []
        current: int | None = folder_id
        while current is not None and len(chain) <= len(folders):
            chain.append(folders[current])
            current = folders[current].get("parent_folder_id")
        return chain

    @staticmethod
    def _below(folder_id: int, top: int | None, folders: dict[int, dict]) -> bool:
        current: int | None = folder_id
        for _ in range(len(folders) + 1):
            if current == top:
                return True
            if current is None or current not in folders:
                return False
            current = folders[current].get("parent_folder_id")
        return False

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
                unlock_at, lock_at = parse_time(item.get("unlock_at")), parse_time(item.get("lock_at"))
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

    def open(self, entry: Entry) -> BinaryIO:
        # The URL redirects to a files host; the token stays on the Canvas host (HostBoundAuth).
        with self._token_hint():
            return self.session.open_stream(entry.ref, expected_size=entry.size)

