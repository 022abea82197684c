"""Which listed files go into a snapshot: safe names, the course's include/exclude and size
limit, and no two names that clash on a case-insensitive checkout or as file and folder.

Selection.decide() decides for a whole listing. A followed Selection keeps the listing and
indexes that let a listing of only what changed (Listing.touched) update it in time
proportional to the change; a change that could clash with another name makes it decide the
whole listing again.
"""
from __future__ import annotations

import fnmatch
import functools
import re
from collections import Counter
from typing import TYPE_CHECKING

from connectors import Entry, Listing, Skipped

from .paths import UnsafePath, safe_path

if TYPE_CHECKING:
    from .config import CourseConfig


def in_words(size: int) -> str:
    """A file size as people read it: 12.3 MB, 4 KB, 300 bytes."""
    for unit, scale in (("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def too_large(size: int | None, limit: int) -> str:
    """Why a file is skipped for its size, and the setting that lets it through."""
    what = f"{in_words(size)}, larger" if size is not None else "larger"
    return f"{what} than max_file_size ({in_words(limit)}): raise max_file_size for this course"


def _pattern(patterns: list[str]) -> re.Pattern | None:
    """One regex for a list of globs; "**" and "dir/**" match at any depth (fnmatch's "*" crosses "/")."""
    globs = {glob for p in patterns for glob in (p, p.replace("**/", ""))}
    return re.compile("|".join(fnmatch.translate(glob) for glob in sorted(globs))) if globs else None


def _checked(raw: object) -> tuple[str | None, str | None]:
    """safe_path(raw), or None and the reason it is refused."""
    return _checked_name(raw) if isinstance(raw, str) else _check(raw)


def _check(raw) -> tuple[str | None, str | None]:
    try:
        return safe_path(raw), None
    except UnsafePath as reason:
        return None, str(reason)


_checked_name = functools.lru_cache(maxsize=1 << 17)(_check)  # a server sees the same names every sync


class _Rules:
    """A course's include, exclude and size limit, compiled once."""

    def __init__(self, course: "CourseConfig"):
        self.include, self.exclude = _pattern(course.include), _pattern(course.exclude)
        self.everything = course.include == ["**"] and not course.exclude
        self.max_file_size = course.max_file_size

    def wants(self, path: str) -> bool:
        return self.everything or bool(self.include and self.include.match(path)
                                       and not (self.exclude and self.exclude.match(path)))

    def judge(self, entry: Entry) -> tuple[str | None, Skipped | None]:
        """The entry's safe path, or why it is skipped; (None, None): the course leaves it out."""
        path, unsafe = _checked(entry.path)
        if path is None:
            return None, Skipped(entry.path, f"unsafe name: {unsafe}")
        if not self.wants(path):
            return None, None
        if entry.size is not None and entry.size > self.max_file_size:
            return None, Skipped(path, too_large(entry.size, self.max_file_size))
        return path, None


def _folders_of(path: str):
    """"a/b/c" → "a", "a/b"."""
    at = path.find("/")
    while at != -1:
        yield path[:at]
        at = path.find("/", at + 1)


class Selection:
    """Which entries of a listing one course writes, and which it skips and why."""

    def __init__(self, course: "CourseConfig"):
        self.rules = _Rules(course)
        self.wanted: dict[str, Entry] = {}  # safe path → entry
        self._skipped: dict[str | tuple, Skipped] = {}  # listed path → why it is skipped, in order
        self.clashes = 0  # skipped for a clash with another name: any change then decides anew
        self._folded: dict[str, str] = {}  # casefolded safe path → safe path, of wanted files
        self._folders: Counter[str] = Counter()  # casefolded folder → wanted files below it
        self._listed: dict[str, Entry] = {}  # the whole listing, by listed path
        self._listed_skipped: dict[str, Skipped] = {}

    @staticmethod
    def rules_key(course: "CourseConfig") -> tuple:
        """Everything a selection depends on besides the listing."""
        return tuple(course.include), tuple(course.exclude), course.max_file_size

    @property
    def skipped(self) -> list[Skipped]:
        return list(self._skipped.values())

    def decide(self, entries: list[Entry], listed_skipped: list[Skipped]) -> None:
        """Decide a whole listing."""
        self.wanted, self._skipped, self.clashes = {}, {}, 0
        for skip in listed_skipped:
            self._skip(skip.path, skip)
        kept: dict[str, str] = {}  # casefolded → safe path, in listing order of names
        for entry in sorted(entries, key=lambda e: e.path):
            path, skip = self.rules.judge(entry)
            if skip is not None:
                self._skip(entry.path, skip)
                continue
            if path is None:
                continue
            key = path.casefold()
            twin = kept.get(key)
            if twin is not None:
                same = "the same name as" if twin == path else "a name differing only in letter case from"
                self._clash(entry.path, Skipped(entry.path, f"{same} {twin}"))
                continue
            kept[key] = path
            self.wanted[path] = entry
        # A name cannot be a file and a folder at once (in any letter case, for Mac and
        # Windows checkouts): keep the file, skip what lies below it. Checked once per folder.
        blocking: dict[str, str | None] = {"": None}  # folder -> the shallowest file among it and its parents

        def file_above(folder: str) -> str | None:
            chain = []  # the folder and its parents not yet known, deepest first
            while folder not in blocking:
                chain.append(folder)
                folder = folder.rpartition("/")[0]
            for unknown in reversed(chain):
                blocking[unknown] = blocking[unknown.rpartition("/")[0]] or kept.get(unknown.casefold())
            return blocking[chain[0]] if chain else blocking[folder]

        for path in sorted(self.wanted):
            if (file := file_above(path.rpartition("/")[0])) is not None:
                self._clash(self.wanted.pop(path).path, Skipped(path, f"{file} is a file, not a folder"))

    def follow(self, listing: Listing) -> bool:
        """Remember the whole listing and index the answer, so that listings of changes can be
        applied; False (nothing kept) when the listing names a path twice."""
        self._listed = {entry.path: entry for entry in listing.entries}
        self._listed_skipped = {skip.path: skip for skip in listing.skipped}
        if len(self._listed) != len(listing.entries) or len(self._listed_skipped) != len(listing.skipped) \
                or self._listed.keys() & self._listed_skipped.keys():
            self._listed, self._listed_skipped = {}, {}
            return False
        self._reindex()
        return True

    def _reindex(self) -> None:
        self._folded, self._folders = {}, Counter()
        for path in self.wanted:
            self._index(path)

    def apply(self, changes: Listing) -> set[str] | None:
        """Update for a listing of changes; the safe paths whose place in the snapshot may have
        changed, or None when the whole listing was decided anew (every path may have)."""
        assert changes.touched is not None
        now = {entry.path: entry for entry in changes.entries}
        now_skipped = {skip.path: skip for skip in changes.skipped}
        for listed in changes.touched:
            self._listed.pop(listed, None)
            self._listed_skipped.pop(listed, None)
            if listed in now:
                self._listed[listed] = now[listed]
            elif listed in now_skipped:
                self._listed_skipped[listed] = now_skipped[listed]
        if self.clashes:
            return self._decide_again()
        candidates = set()
        for listed in sorted(changes.touched):
            path, _ = _checked(listed)
            if path is not None and (held := self.wanted.get(path)) is not None and held.path == listed:
                del self.wanted[path]
                self._unindex(path)
                candidates.add(path)
            self._skipped.pop(listed, None)
            if listed in now_skipped:
                self._skip(listed, now_skipped[listed])
            elif listed in now:
                path, skip = self.rules.judge(now[listed])
                if skip is not None:
                    self._skip(listed, skip)
                elif path is not None:
                    if self._would_clash(path):
                        return self._decide_again()
                    self.wanted[path] = now[listed]
                    self._index(path)
                    candidates.add(path)
        return candidates

    def _decide_again(self) -> None:
        self.decide(list(self._listed.values()), list(self._listed_skipped.values()))
        self._reindex()
        return None

    def _would_clash(self, path: str) -> bool:
        key = path.casefold()
        return key in self._folded or key in self._folders or any(
            folder in self._folded for folder in _folders_of(key))

    def _skip(self, listed: str, skip: Skipped) -> None:
        # A listing that names a path twice, or not as text (never one that is followed), keeps them all.
        unique = isinstance(listed, str) and listed not in self._skipped
        self._skipped[listed if unique else (len(self._skipped),)] = skip

    def _clash(self, listed: str, skip: Skipped) -> None:
        self._skip(listed, skip)
        self.clashes += 1

    def _index(self, path: str) -> None:
        key = path.casefold()
        self._folded[key] = path
        self._folders.update(_folders_of(key))

    def _unindex(self, path: str) -> None:
        key = path.casefold()
        del self._folded[key]
        for folder in _folders_of(key):
            self._folders[folder] -= 1
            if not self._folders[folder]:
                del self._folders[folder]
