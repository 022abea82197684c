"""Availability windows shared by connectors that apply an LMS's release rules themselves."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import ClassVar, Iterable


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
