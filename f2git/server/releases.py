"""Refresh a course right when its source releases more, not at the next period.

Connectors report the next moment something becomes visible (Canvas `unlock_at`, Stud.IP
timed folders, Zenodo embargo ends) as `SyncResult.next_release`, stored in the course's
status. One APScheduler `date` job per course refreshes it just after that moment; every
sync replaces the job, and a restart recomputes it from the status files. A release that
passed while the server was down is caught up at once.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from apscheduler.triggers.date import DateTrigger

from connectors._time import any_time, schedulable

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from f2git.outcome import SyncResult
    from f2git.status import CourseStatus

log = logging.getLogger("f2git.releases")

# Sources decide with their own clock whether a file is released yet: ask a moment after.
RELEASE_DELAY = timedelta(seconds=2)


def release_time(value: Any) -> datetime | None:
    """A next release (datetime, ISO text or epoch seconds) as an aware datetime, clamped to
    datetime's range; ValueError if unreadable."""
    try:
        return any_time(value)
    except TypeError:
        raise ValueError(f"not a moment: {type(value).__name__}") from None


class ReleaseSchedule:
    def __init__(self, scheduler: "BaseScheduler", refresh: Callable[[str], Awaitable[None]],
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.scheduler = scheduler
        self.refresh = refresh
        self.clock = clock

    @staticmethod
    def job_id(course: str) -> str:
        return f"release:{course}"

    def after_sync(self, result: "SyncResult") -> None:
        """A refresh listener. A failed sync keeps the plan, unless it names a release (an embargo's end)."""
        if not result.dry_run and (result.ok or result.next_release):
            self.plan(result.course, result.next_release)

    def restore(self, records: "Iterable[CourseStatus]") -> None:
        """At startup: plan every course's stored next release; catch up on missed ones now."""
        for record in records:
            try:
                self.plan(record.course, record.next_release, catch_up=True)
            except Exception:  # one course's record never stops the server or another course
                log.warning("course %s: cannot plan its next release %r", record.course, record.next_release)

    def plan(self, course: str, next_release: Any, *, catch_up: bool = False) -> None:
        """Refresh `course` just after `next_release`, replacing its earlier plan; None clears it."""
        try:
            moment = release_time(next_release)
        except ValueError:
            log.warning("course %s: cannot read next release time %r", course, next_release)
            return
        now = self.clock()
        moment = schedulable(moment, now)  # "never" (year 9999) plans nothing
        if moment is None or (moment <= now and not catch_up):
            if self.scheduler.get_job(self.job_id(course)):
                self.scheduler.remove_job(self.job_id(course))
            return
        run_at = max(moment + RELEASE_DELAY, now)
        self.scheduler.add_job(self.refresh, DateTrigger(run_at), args=[course], id=self.job_id(course),
                               name=f"release {course}", replace_existing=True)
        log.info("course %s: next release at %s, refresh planned for %s", course, moment.isoformat(),
                 run_at.isoformat(timespec="seconds"))
