"""Shared by connectors that read an LMS's JSON API with a staff account and apply its
release rules themselves (Canvas, Stud.IP): availability windows, the configured folder,
and errors that say what to check.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import ClassVar, Iterable, Iterator

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
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise SourceError(f"{label}: the API answered in an unexpected shape ({type(error).__name__});"
                          " is the URL right?") from None
