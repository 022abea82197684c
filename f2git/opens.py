"""How many students opened a course (and each file in it) this week, without keeping who.

A student is remembered only as HMAC(week key, student) cut to 8 bytes. The week key is random,
lives in memory only and is dropped, with every digest, when the UTC week (ISO, from Monday)
turns: digests cannot be turned back into names by trying names, and nothing links one week's
students to the next. The price: a restart forgets the week's students (what would let f2git
recognise them after a restart is what it refuses to keep), and two students out of ~2^64 may
count as one.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Callable

DIGEST_BYTES = 8
# paths counted per course and week: a member inventing paths must not grow the memory without
# end (a course's real files fit); opens beyond it count for the course only
MAX_PATHS = 10_000


def week_of(epoch: float) -> tuple[int, int]:
    """The ISO (year, week) of a moment in UTC."""
    year, week, _ = datetime.fromtimestamp(epoch, timezone.utc).isocalendar()
    return year, week


class OpenCounts:
    """Opens per course and path ('' is the course folder): all opens, and distinct students this week."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._week: tuple[int, int] | None = None
        self._key = b""
        self._students: dict[tuple[str, str], set[bytes]] = {}  # (course, path) -> digests
        self._course_students: dict[str, set[bytes]] = {}
        self._paths: Counter[str] = Counter()  # course -> paths counted this week
        self.opens: Counter[str] = Counter()  # course -> opens since the start (not per week)

    def _turn(self) -> None:
        week = week_of(self._clock())
        if week != self._week:  # a new week: forget the key, and with it every digest
            self._week, self._key = week, secrets.token_bytes(32)
            self._students, self._course_students, self._paths = {}, {}, Counter()

    def opened(self, course: str, path: str, student: str) -> None:
        """One open of `path` in `course` by `student` (a name or address: only its keyed digest stays)."""
        self._turn()
        digest = hmac.new(self._key, student.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()[:DIGEST_BYTES]
        path = path.strip("/")
        key = (course, path)
        if key not in self._students and self._paths[course] < MAX_PATHS:
            self._students[key] = set()
            self._paths[course] += 1
        if key in self._students:
            self._students[key].add(digest)
        self._course_students.setdefault(course, set()).add(digest)
        self.opens[course] += 1

    def students(self, course: str, path: str | None = None) -> int:
        """Distinct students this week who opened `path` (None: anything in the course)."""
        self._turn()
        if path is None:
            return len(self._course_students.get(course, ()))
        return len(self._students.get((course, path.strip("/")), ()))

    def by_path(self, course: str) -> dict[str, int]:
        """Distinct students this week per opened path of `course`."""
        self._turn()
        return {path: len(digests) for (name, path), digests in self._students.items() if name == course}
