"""Shared by connectors that read an LMS's JSON API with a staff account and apply its
release rules themselves (Canvas, Stud.IP): availability windows, the configured folder,
and errors that say what to check.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, ClassVar, Hashable, Iterable, Iterator, Mapping

from ._json import TooDeep
from .base import AuthError, SourceError


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Release:
    """Whether an item is visible now, and if not yet, when it will be."""

    visible: bool
    at: datetime | None = None  # aware UTC; only for items that are not visible yet but will be

    NEVER: ClassVar["Release"]


Release.NEVER = Release(False)


def window(opens: Iterable[datetime], closes: Iterable[datetime], now: datetime) -> Release:
    """An item inside several windows (its own and its folders'): visible while all are open."""
    opens_at = max(opens, default=None)  # the last one to open
    closes_at = min(closes, default=None)  # the first one to close
    if closes_at is not None and closes_at <= max(now, opens_at or now):
        return Release.NEVER  # closed already, or closes before it would open
    if opens_at is not None and opens_at > now:
        return Release(False, opens_at)
    return Release(True)


class FolderTree:
    """A course's folders as the API lists them (id → folder with a parent id and a name):
    their paths below the course's top folder, the folder a `folder` key names, and what
    lies below it. Folders whose parents the API did not list (or that loop) have no path."""

    def __init__(self, folders: Mapping[Hashable, Any], parent: Callable[[Any], Hashable | None],
                 name: Callable[[Any], str], *, label: str, course: str):
        self.folders = dict(folders)
        self.parents = {folder_id: parent(folder) for folder_id, folder in self.folders.items()}
        self.label, self.course = label, course
        roots = [folder_id for folder_id, above in self.parents.items() if above is None]
        if len(roots) > 1:
            raise SourceError(f"{label}: course {course} has {len(roots)} top folders, expected one")
        self.root = roots[0] if roots else None
        self.paths: dict[Hashable, str] = {}
        for folder_id in self.folders:
            chain = self.chain(folder_id)
            if chain and chain[-1] == self.root:
                names = [name(self.folders[above]) for above in reversed(chain[:-1])]
                self.paths[folder_id] = "/".join(names)

    def chain(self, folder_id: Hashable) -> list[Hashable]:
        """The folder and every folder above it, up to the first unlisted parent or a loop."""
        chain: list[Hashable] = []
        current: Hashable | None = folder_id
        while current is not None and current in self.folders and current not in chain:
            chain.append(current)
            current = self.parents[current]
        return chain if current is None else []  # [] for an unlisted parent or a loop

    def top(self, configured: str) -> Hashable | None:
        """The folder the `folder` key names (the course's top folder when empty)."""
        wanted = folder_path(configured)
        if not wanted:
            return self.root
        for folder_id, path in self.paths.items():
            if path == wanted:
                return folder_id
        raise SourceError(f"{self.label}: course {self.course} has no folder {wanted!r} (key 'folder')")

    def below(self, folder_id: Hashable, top: Hashable | None) -> bool:
        """Whether the folder is `top` or lies somewhere below it."""
        return top is not None and top in self.chain(folder_id)

    def relative(self, folder_id: Hashable, top: Hashable) -> str:
        """The folder's path below `top` ("" for `top` itself)."""
        return self.paths[folder_id][len(self.paths[top]):].strip("/")


def folder_path(raw: str) -> str:
    """A configured `folder` key as a clean relative path ("/week1//data/" → "week1/data")."""
    return "/".join(part for part in raw.strip().split("/") if part)


@contextmanager
def credentials_hint(hint: str) -> Iterator[None]:
    """Add what to check to a rejected-credentials error ("check the access token in $X")."""
    try:
        yield
    except AuthError as error:
        raise AuthError(f"{error}; {hint}") from None


@contextmanager
def api_shape(label: str) -> Iterator[None]:
    """JSON that lacks what the API documents is a source error, not a crash; names stay out of it."""
    try:
        yield
    except TooDeep as error:
        raise SourceError(f"{label}: the API answered with {error}") from None
    except (RecursionError, OverflowError) as error:
        raise SourceError(f"{label}: the API answered with a value out of range ({type(error).__name__})") from None
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise SourceError(f"{label}: the API answered in an unexpected shape ({type(error).__name__});"
                          " is the URL right?") from None
