"""Course membership from the LMS: read a course's roster, keep it, and decide from it.

- `read_roster(config, course)` asks the course's LMS (its connector's `read_roster`, or LTI NRPS
  for courses that name `lti_contexts` or whose source has no roster); blocking, bounded like a sync.
- `RosterStore` keeps the last roster of each course in `<data_dir>/rosters/<course>.json` (0600,
  outside every repo); a failed read keeps the last good roster and records since when it fails.
- `Membership` indexes a roster by hub name; `access()` is the one decision (fetch, manage, and a
  refusal reason that speaks about the asking student only).
- `RosterKeeper` (the server's): reads with each sync and at most every `roster_ttl`, and once more
  for a refused click (single-flight, at most one read per course per RECHECK_INTERVAL).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from connectors.base import ReadLimits, SourceError, read_limits
from connectors.roster import (ACTIVE, COMPLETED, DELETED, INACTIVE, INSTRUCTOR, INVITED, LEARNER, MANAGING_ROLES, TA,
                               Enrolment, hub_name)

if TYPE_CHECKING:
    from f2git.config import Config, CourseConfig

log = logging.getLogger("f2git.roster")

RECHECK_INTERVAL = 10.0  # s: refused clicks re-read a course's roster at most this often
READ_THREADS = 4  # roster reads at once (a start with 200 stale rosters queues them here, not in the loop's pool)
READ_TIMEOUT = 120.0  # s: one roster read, all pages
FETCHING_ROLES = (LEARNER, INSTRUCTOR, TA)
ROSTER_LABELS = {"canvas": "Canvas", "moodle": "Moodle", "studip": "Stud.IP", "lti": "the LMS (LTI)"}


def uses_roster(course: "CourseConfig") -> bool:
    return course.members == "lms" or bool(course.hub_group)


# -- the stored roster ---------------------------------------------------------------------------

@dataclass
class Roster:
    course: str
    source: str  # canvas | moodle | studip | lti
    enrolments: list[Enrolment] | None = None  # None: never read successfully
    read_at: float | None = None  # epoch s of the last successful read
    error: str | None = None  # the last read's failure, while it lasts
    error_since: float | None = None  # the first failure after the last success

    def to_json(self) -> dict[str, Any]:
        return {"course": self.course, "source": self.source, "read_at": self.read_at, "error": self.error,
                "error_since": self.error_since,
                "enrolments": None if self.enrolments is None else
                [[e.lms_user, e.hub_user, e.role, e.state] for e in self.enrolments]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Roster":
        rows = data.get("enrolments")
        return cls(str(data["course"]), str(data["source"]),
                   None if rows is None else [Enrolment(*row) for row in rows],
                   data.get("read_at"), data.get("error"), data.get("error_since"))


class RosterStore:
    """`<data_dir>/rosters/<course>.json`, 0600; reads cached while the file is unchanged."""

    def __init__(self, data_dir: Path):
        self.folder = Path(data_dir) / "rosters"
        self._cache: dict[str, tuple[tuple[int, int, int], Roster, "Membership"]] = {}
        self._lock = threading.Lock()

    def path(self, course: str) -> Path:
        return self.folder / f"{course}.json"

    def load(self, course: str) -> Roster | None:
        return (self.entry(course) or (None, None))[0]

    def membership(self, course: str) -> "Membership | None":
        return (self.entry(course) or (None, None))[1]

    def entry(self, course: str) -> tuple[Roster, "Membership"] | None:
        path = self.path(course)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(course)
        if cached and cached[0] == key:
            return cached[1], cached[2]
        try:
            roster = Roster.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("roster of course %s is unreadable (%s); it is read again from the LMS",
                        course, type(error).__name__)
            return None
        membership = Membership(roster)
        with self._lock:
            self._cache[course] = (key, roster, membership)
        return roster, membership

    def save(self, roster: Roster) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, scratch = tempfile.mkstemp(prefix=f".{roster.course}.", dir=self.folder)  # 0600
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(roster.to_json(), handle)
            os.replace(scratch, self.path(roster.course))
        except BaseException:
            os.unlink(scratch)
            raise


# -- who counts ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Access:
    fetch: bool
    manage: bool
    reason: str = ""  # why not, in words about the asking user only


class Membership:
    """A roster indexed by hub name: the union of each user's enrolments; a hub name that two
    LMS users map to belongs to neither."""

    def __init__(self, roster: Roster):
        self.roster = roster
        self.by_hub: dict[str, list[Enrolment]] = {}
        owners: dict[str, set[str]] = {}
        unmapped: set[str] = set()
        for enrolment in roster.enrolments or ():
            if enrolment.hub_user is None:
                unmapped.add(enrolment.lms_user)
                continue
            self.by_hub.setdefault(enrolment.hub_user, []).append(enrolment)
            owners.setdefault(enrolment.hub_user, set()).add(enrolment.lms_user)
        self.duplicates = sorted(name for name, users in owners.items() if len(users) > 1)
        self.unmapped = len(unmapped)

    def roles(self, name: str) -> set[str]:
        """The active roles of hub user `name` (none when the name is claimed twice)."""
        if name in self.duplicates:
            return set()
        return {e.role for e in self.by_hub.get(name, ()) if e.state == ACTIVE}

    def members(self) -> list[dict[str, str]]:
        """Who may fetch, each with their strongest role (`/members`, the hub group)."""
        rank = {INSTRUCTOR: 0, TA: 1, LEARNER: 2}
        found = []
        for name in sorted(self.by_hub):
            roles = self.roles(name) & set(FETCHING_ROLES)
            if roles:
                found.append({"hub_user": name, "role": min(roles, key=rank.__getitem__)})
        return found

    def counts(self) -> dict[str, int]:
        """Members who may fetch, by role."""
        counts = {role: 0 for role in FETCHING_ROLES}
        for member in self.members():
            counts[member["role"]] += 1
        return counts

    def access(self, user: str, course: str) -> Access:
        name = hub_name(user) or ""
        roster = self.roster
        where = ROSTER_LABELS.get(roster.source, "the LMS")
        if roster.enrolments is None:
            return Access(False, False, f"the member list of course {course} has not been read from {where} yet,"
                                        " so only hub admins may fetch it for now; try again in a few minutes")
        if name in self.duplicates:
            return Access(False, False, f"your hub name {name!r} could not be matched to one account of {where}"
                                        f" in course {course}; your instructor sees this on the f2git dashboard")
        roles = self.roles(name)
        if roles & set(FETCHING_ROLES):
            return Access(True, bool(roles & set(MANAGING_ROLES)))
        states = {e.state for e in self.by_hub.get(name, ())}
        if INVITED in states:
            reason = (f"your enrolment in course {course} is an invitation you have not accepted yet:"
                      f" accept it in {where}, then click the link again")
        elif states & {COMPLETED, INACTIVE, DELETED}:
            reason = f"your enrolment in course {course} in {where} has ended or is inactive"
        elif roles:  # observers and roles that get nothing
            reason = f"your role in course {course} in {where} ({', '.join(sorted(roles))}) does not get the course files"
        else:
            reason = (f"you ({name}) are not enrolled in course {course} in {where}; if you enrolled"
                      " just now, click the link again in a minute")
        return Access(False, False, reason)


# -- reading -------------------------------------------------------------------------------------

def read_enrolments(config: "Config", course: "CourseConfig") -> list[Enrolment]:
    """The course's enrolments from its LMS (blocking); SourceError when they cannot be read."""
    limited = read_limits.set(ReadLimits(min(course.sync_timeout or READ_TIMEOUT, READ_TIMEOUT),
                                         course.min_read_speed))
    try:
        if course.roster_source == "lti":
            from f2git.lti.nrps import read_course_roster

            return read_course_roster(config, course)
        connector = course.connector()
        try:
            return connector.read_roster(course.hub_username)
        finally:
            connector.close()
    finally:
        read_limits.reset(limited)


def refresh_roster(config: "Config", course: "CourseConfig", store: RosterStore,
                   clock: Callable[[], float] = time.time,
                   reader: Callable[["Config", "CourseConfig"], list[Enrolment]] = read_enrolments) -> Roster:
    """Read the roster and store it; a failure keeps the last good one and says since when."""
    last = store.load(course.name)
    source = course.roster_source
    try:
        enrolments = reader(config, course)
    except (SourceError, OSError) as error:
        message = str(error) if isinstance(error, SourceError) else f"{type(error).__name__}: {error}"
        since = last.error_since if last and last.error else clock()
        roster = Roster(course.name, source, last.enrolments if last else None, last.read_at if last else None,
                        message, since)
        log.warning("roster of course %s could not be read (%s); %s", course.name, message,
                    "keeping the last one" if roster.enrolments is not None else "only hub admins may fetch")
    else:
        roster = Roster(course.name, source, enrolments, clock())
        log.info("roster of course %s read: %d enrolment(s)", course.name, len(enrolments))
    store.save(roster)
    return roster


class RosterKeeper:
    """The server's roster reads: one at a time per course, in worker threads."""

    def __init__(self, config: "Config", store: RosterStore | None = None, *,
                 clock: Callable[[], float] = time.time,
                 reader: Callable[["Config", "CourseConfig"], list[Enrolment]] = read_enrolments):
        self.config = config
        self.store = store or RosterStore(config.server.data_dir)
        self.clock = clock
        self.reader = reader
        self._running: dict[str, asyncio.Future] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(READ_THREADS, thread_name_prefix="f2git-roster")
        self._last_start: dict[str, float] = {}  # monotonic
        self._read_listeners: list[Callable[["CourseConfig", Roster], Any]] = []
        self.reads = 0  # roster reads started (tests, benchmarks)

    def on_read(self, listener: Callable[["CourseConfig", Roster], Any]) -> None:
        """Call `listener(course, roster)` (in the loop; a coroutine is run) after each successful read."""
        self._read_listeners.append(listener)

    def _tell(self, course: "CourseConfig", done: asyncio.Future) -> None:
        if done.cancelled() or done.exception() is not None or done.result().error:
            return
        for listener in self._read_listeners:
            outcome = listener(course, done.result())
            if asyncio.iscoroutine(outcome):
                asyncio.ensure_future(outcome)

    def start(self, course: "CourseConfig") -> asyncio.Future:
        """The read in flight, or a new one."""
        running = self._running.get(course.name)
        if running is not None and not running.done():
            return running
        self.reads += 1
        self._last_start[course.name] = time.monotonic()
        task = asyncio.get_running_loop().run_in_executor(self._pool, refresh_roster, self.config, course,
                                                          self.store, self.clock, self.reader)
        self._running[course.name] = task
        task.add_done_callback(lambda done: self._tell(course, done))
        return task

    def due(self, course: "CourseConfig") -> bool:
        """Older than `roster_ttl` (or never read), and no read in flight."""
        running = self._running.get(course.name)
        if running is not None and not running.done():
            return False
        roster = self.store.load(course.name)
        if roster is None:
            return True
        if roster.error:  # a failing LMS is asked again after roster_ttl from the last try, not per click
            started = self._last_start.get(course.name)
            return started is None or time.monotonic() - started >= max(RECHECK_INTERVAL, course.roster_ttl)
        return self.clock() - (roster.read_at or 0.0) >= course.roster_ttl

    def refresh_if_due(self, course: "CourseConfig") -> None:
        """Start a background read when the roster is stale (each sync, each click)."""
        if uses_roster(course) and self.due(course):
            self.start(course)

    async def recheck(self, course: "CourseConfig", wait: float) -> None:
        """For a refused click: read again (single-flight, at most once per RECHECK_INTERVAL)
        and wait at most `wait` seconds for it."""
        running = self._running.get(course.name)
        if running is None or running.done():
            started = self._last_start.get(course.name)
            if started is not None and time.monotonic() - started < RECHECK_INTERVAL:
                return
            running = self.start(course)
        try:
            await asyncio.wait_for(asyncio.shield(running), wait)
        except (asyncio.TimeoutError, SourceError, OSError):
            pass
        except Exception:  # a reader's bug: the roster stays as it was
            log.exception("roster read of course %s failed", course.name)

    async def close(self) -> None:
        for task in list(self._running.values()):
            if not task.done():
                try:
                    await asyncio.wait_for(asyncio.shield(task), 30)
                except Exception:
                    pass
        self._pool.shutdown(wait=False, cancel_futures=True)


def summary(course: "CourseConfig", roster: Roster | None, membership: Membership | None) -> dict[str, Any]:
    """What the dashboard shows of a roster: where from, when, counts; no names but duplicated ones."""
    source = ROSTER_LABELS.get(course.roster_source, "the LMS")
    if roster is None or membership is None or roster.enrolments is None:
        return {"read": False, "source": source, "error": roster.error if roster else None,
                "error_since": roster.error_since if roster else None}
    return {"read": True, "source": source, "read_at": roster.read_at, "counts": membership.counts(),
            "unmapped": membership.unmapped, "duplicates": membership.duplicates, "error": roster.error,
            "error_since": roster.error_since}
