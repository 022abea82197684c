"""Times as APIs write them, read so that no value a source sends can break f2git.

Sources write "never" as the end of time (Moodle's 9999-12-31, Canvas `unlock_at` with a
negative offset that lands past year 9999, Unix seconds of 1e20). Such moments are read, not
refused: they are clamped into what datetime holds, and `schedulable` turns anything past
`HORIZON` into "not scheduled", so nobody ever adds a delay to year 9999.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
LATEST = datetime.max.replace(tzinfo=timezone.utc)
# Releases further ahead than this are "not scheduled": the periodic sync still sees them.
HORIZON = timedelta(days=100 * 366)


def _utc(moment: datetime) -> datetime:
    """An aware UTC datetime; a time without a zone is UTC; past the ends of time, clamped."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is in year 10000
        return LATEST if moment.year > 1 else EARLIEST


def iso_time(value: Any) -> datetime | None:
    """An ISO 8601 date or date-time ("2026-03-01", "2026-03-01T09:00:00Z", "…+01:00") as an
    aware UTC datetime, clamped to datetime's range. None for None or ""; ValueError if unreadable."""
    if value is None or value == "":
        return None
    return _utc(datetime.fromisoformat(str(value)))  # reads "Z" since Python 3.11


def epoch_time(seconds: Any) -> datetime:
    """Unix seconds (a number or its text) as an aware UTC datetime, clamped to datetime's
    range (1e20 is the end of time, not an error); ValueError for NaN or text that is no number."""
    value = float(seconds)
    if math.isnan(value):
        raise ValueError("not a number")
    if value >= LATEST.timestamp():
        return LATEST
    if value <= EARLIEST.timestamp():
        return EARLIEST
    return datetime.fromtimestamp(value, timezone.utc)


def any_time(value: Any) -> datetime | None:
    """A moment as f2git stores or receives it (datetime, ISO text or Unix seconds) as an aware
    UTC datetime, clamped; None for None or ""; ValueError if unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return epoch_time(value)
    return iso_time(value)


def schedulable(moment: datetime | None, now: datetime | None = None) -> datetime | None:
    """`moment` if something can be planned for it, None if it is past the horizon ("never")."""
    if moment is None:
        return None
    now = now or datetime.now(timezone.utc)
    return moment if moment - now <= HORIZON else None
