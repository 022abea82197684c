"""What f2git tells people about a course, in one place: the CLI and the dashboard say the same.

Every sentence about what students get is true for the course's state: "students still get
the last snapshot" only where there is one.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence

from connectors.base import counted

NO_SNAPSHOT = "students get no files yet: there is no snapshot"


def when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%-d %b %H:%M UTC")


def age(seconds: float) -> str:
    """A duration in the largest whole unit: "3 days", "5 hours", "12 minutes"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return counted(count, unit)
    return "less than a minute"


def what_students_get(commit: str | None, since: float | None = None) -> str:
    """After a failure: what a student's click brings."""
    if not commit:
        return NO_SNAPSHOT
    if since:
        return f"students still get the snapshot of {when(since)}"
    return "students still get the last snapshot"


def failure(error: str | None, commit: str | None, since: float | None = None) -> str:
    """`Failed: <error> — <what students get>.` for a sync that failed."""
    return f"Failed: {(error or 'unknown error').rstrip('.')}. {_capital(what_students_get(commit, since))}."


def skipped_lines(skipped: Sequence, total: int | None = None) -> list[str]:
    """`path: reason` per skipped file (dicts or Skipped), and how many more the list leaves out."""
    lines = [f"{_get(skip, 'path')}: {_get(skip, 'reason')}" for skip in skipped]
    more = (total or len(skipped)) - len(skipped)
    if more > 0:
        lines.append(f"… and {more} more")
    return lines


def skipped_count(skipped: Sequence, total: int | None = None) -> str:
    count = max(total or 0, len(skipped))
    return f"{counted(count, 'file')} skipped" if count else ""


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.0f} kB" if size >= 1000 else f"{size} B"


def _get(item: object, key: str) -> str:
    return str(item[key] if isinstance(item, dict) else getattr(item, key))


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
