"""Times as APIs write them."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def iso_time(value: Any) -> datetime | None:
    """An ISO 8601 date or date-time ("2026-03-01", "2026-03-01T09:00:00Z", "…+01:00") as an
    aware UTC datetime; a time without a zone is UTC. None for None or ""; ValueError if unreadable."""
    if value is None or value == "":
        return None
    moment = datetime.fromisoformat(str(value))  # reads "Z" since Python 3.11
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
