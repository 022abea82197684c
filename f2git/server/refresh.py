"""Refresh on click: one source request per change, not per student.

Every path that syncs a course in the server (a git click, the scheduler, the API) goes
through one `Refresher`, which keeps at most one sync per course in flight and lets
everyone who asks meanwhile share its result. A click only refreshes when the last check
is older than `refresh_ttl`, and waits for it at most `refresh_wait`; after that the last
snapshot is served while the sync finishes in the background. One click is one client's git
requests from the first until its fetch of a pack, within `click_window` of the click's
refresh (nbgitpuller runs `ls-remote` twice, then `clone` or `fetch`): only the first refreshes.

The refresher is also what the server knows of each course (`CourseState`): the status as
last recorded, the head, and what runs. Readers ask it, not the disk or git.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from connectors.base import counted
from f2git import status
from f2git.config import Config, CourseConfig
from f2git.outcome import Progress, SyncResult
from f2git.snapshot import sync_course
from f2git.store import CourseRepo

from .lanes import Job, SyncLanes

log = logging.getLogger("f2git.refresh")

WORKERS = 4  # syncs at once that hold a worker
# s after which a sync stops counting against the workers: a click behind hung sources waits
# about this long at most, not refresh_wait; a big course's honest sync merely runs beside others
SLOW_AFTER = 2.0
MAX_SYNC_THREADS = 32  # all sync threads, slow ones included: how many hung courses are outlived
DISK_CHECK_EVERY = 10.0  # s between probes of the data dir for /healthz


@dataclass(eq=False)
class CourseState:
    """One course, in memory. `record` is its status (the file's copy, or what the file would say
    when the disk refused it); `record.commit` is the head once `head_known`."""

    name: str
    record: status.CourseStatus
    head_known: bool = False
    head_loading: asyncio.Future | None = None
    checked: float = 0.0  # clock time the source was last read completely (TTL decisions)
    failed: float | None = None  # clock time of the last failed sync; None once one succeeds
    status_error: str | None = None  # why the last outcome is not in the status file
    sync: asyncio.Task[SyncResult] | None = None  # the sync in flight
    job: Job | None = None  # its place in the sync lanes
    mass_delete: bool = False  # whether the sync in flight may mass-delete
    waiting: int = 0  # clicks waiting for the sync in flight
    clicks: dict[str, float] = field(default_factory=dict)  # client -> monotonic end of its click's refresh
    stamp: tuple | None = None  # status.stamp of the file `record` was read from

    @property
    def has_snapshot(self) -> bool:
        return self.head_known and self.record.commit is not None


def _disk_problems(config: Config) -> list[str]:
    """What the data dir and backup_dir refuse now (probe files; run in a thread)."""
    problems = [f"data dir: {problem}"] if (problem := status.unwritable(config)) else []
    if problem := status.backup_unwritable(config):
        problems.append(f"backup_dir: {problem}; no course's history is backed up")
    return problems


def click_client(kind: str, name: str, address: str | None) -> str:
    """Who is clicking, to tie one click's requests together: the user or token, else the address."""
    return f"address:{address}" if kind == "anonymous" else f"{kind}:{name}"


class Refresher:
    """Single-flight syncs per course, run in worker threads off the event loop."""

    def __init__(self, config: Config, *, max_workers: int | None = None,
                 clock: Callable[[], float] = time.time):
        self.config = config
        self._clock = clock
        courses = max(1, len(config.courses))
        self._lanes = SyncLanes(workers=max_workers or min(WORKERS, courses),
                                limit=min(MAX_SYNC_THREADS, courses),
                                slow_after=max(1.0, min(config.server.refresh_wait, SLOW_AFTER)))
        self._courses: dict[str, CourseState] = {}
        for name in config.courses:
            stamp = status.stamp(config, name)  # before reading: a write after it is noticed later
            record = status.read_file(config, name)  # JSON only: the heads load later, off the loop
            self._courses[name] = CourseState(
                name, record, checked=record.last_check or 0.0,
                failed=(record.last_error_at or 0.0) if record.last_error else None, stamp=stamp)
        self._result_listeners: list[Callable[[SyncResult], None]] = []
        self._progress_listeners: list[Callable[[Progress], None]] = []
        self._click_listeners: list[Callable[[str, str, float], None]] = []
        self._added_listeners: list[Callable[[str], None]] = []
        self._disk_problem: list[str] = []
        self._disk_checked = float("-inf")
        self._disk_probe: asyncio.Future | None = None

    def add_course(self, name: str) -> None:
        """Serve a course created while running (an LTI launch's): a fresh state, no status yet."""
        if name not in self._courses:
            self._courses[name] = CourseState(name, status.read_file(self.config, name), checked=0.0, failed=None)
            for listener in self._added_listeners:
                listener(name)

    def on_course_added(self, listener: Callable[[str], None]) -> None:
        """Call `listener(name)` in the event loop when `add_course` serves a new course."""
        self._added_listeners.append(listener)

    def on_result(self, listener: Callable[[SyncResult], None]) -> None:
        """Call `listener(result)` in the event loop after every sync."""
        self._result_listeners.append(listener)

    def on_progress(self, listener: Callable[[Progress], None]) -> None:
        """Call `listener(progress)` in the event loop as syncs go (listing, downloading…)."""
        self._progress_listeners.append(listener)

    def on_click_served(self, listener: Callable[[str, str, float], None]) -> None:
        """Call `listener(course, outcome, waited_seconds)` after each click's refresh step;
        outcome: fresh (within the TTL), refreshed, timeout or failed (last snapshot served)."""
        self._click_listeners.append(listener)

    # -- what the server knows of a course (cheap reads: no disk, no git) -------------------

    def state(self, course: str) -> CourseState:
        return self._courses[course]

    def status(self, course: str) -> status.CourseStatus:
        """The course's status as the server knows it; `commit` is None until the head is loaded
        (see `course_status`). Shared: do not change it."""
        return self._courses[course].record

    async def course_status(self, course: str) -> status.CourseStatus:
        """The status with the head (loaded from the repo, off the loop, the first time)."""
        await self._load_head(self._courses[course])
        return self._courses[course].record

    async def load_heads(self, courses: Iterable[str] | None = None) -> None:
        """Load the heads not known yet, one after the other (at start-up, in the background)."""
        for name in list(courses if courses is not None else self._courses):
            await self._load_head(self._courses[name])

    def status_error(self, course: str) -> str | None:
        return self._courses[course].status_error

    def last_error(self, course: str) -> str | None:
        """Why the last sync failed, or None if it succeeded."""
        return self._courses[course].record.last_error

    def snapshot_likely(self, course: str) -> bool:
        """Has a snapshot: exact once the head is loaded, until then what the status says (for metrics)."""
        state = self._courses[course]
        return state.has_snapshot if state.head_known else state.record.last_success is not None

    async def has_snapshot(self, course: str) -> bool:
        """Whether the course has a snapshot to serve. History only grows: once true, always true."""
        state = self._courses[course]
        await self._load_head(state)
        return state.has_snapshot

    def _notice_outside_syncs(self, state: CourseState) -> None:
        """`f2git sync` beside the server moved main and rewrote the status file: take both in,
        so pages and API show the snapshot git serves, not the one this server last made."""
        if state.sync is not None:
            return  # its outcome is read back when it ends
        stamp = status.stamp(self.config, state.name)
        if stamp is not None and stamp != state.stamp:  # a file gone or unreadable is no news: memory knows more
            state.record, state.stamp, state.head_known = status.read_file(self.config, state.name), stamp, False

    async def _load_head(self, state: CourseState) -> None:
        self._notice_outside_syncs(state)
        if state.head_known:
            return
        if state.head_loading is None:
            state.head_loading = asyncio.ensure_future(
                asyncio.to_thread(CourseRepo.for_course(self.config, state.name).head))
        loading = state.head_loading
        try:
            head = await asyncio.shield(loading)
        finally:
            if state.head_loading is loading:
                state.head_loading = None
        if not state.head_known:  # a sync that finished meanwhile knows better
            state.record.commit, state.head_known = head, True

    def is_running(self, course: str) -> bool:
        return self._courses[course].sync is not None

    def waiting(self, course: str) -> int:
        """How many clicks are waiting for the course's refresh right now."""
        return self._courses[course].waiting

    def last_check(self, course: str) -> float:
        return self._courses[course].checked

    def is_stale(self, course: str) -> bool:
        """Older than the TTL. A failure also counts as a check, so a broken source is
        asked at most once per TTL, not once per click."""
        state = self._courses[course]
        return self._clock() - max(state.checked, state.failed or 0.0) >= self.config.server.refresh_ttl

    async def problems(self) -> list[str]:
        """Why the server cannot keep its record: the data dir or backup_dir refuses writes, a
        course's last outcome could not be written, or its backup failed. Empty when all is well
        (for /healthz)."""
        now = time.monotonic()
        if now - self._disk_checked >= DISK_CHECK_EVERY:
            if self._disk_probe is None:  # one probe at a time, however many ask
                self._disk_probe = asyncio.ensure_future(asyncio.to_thread(_disk_problems, self.config))
            probe = self._disk_probe
            try:
                self._disk_problem = await asyncio.shield(probe)
                self._disk_checked = now
            finally:
                if self._disk_probe is probe:
                    self._disk_probe = None
        found = list(self._disk_problem)
        found += [f"course {state.name}: {state.status_error}" for state in self._courses.values()
                  if state.status_error]
        found += [f"course {state.name}: {state.record.backup_error}" for state in self._courses.values()
                  if state.record.backup_error]
        return found

    # -- syncs -------------------------------------------------------------------------------

    def start(self, course: CourseConfig, *, allow_mass_delete: bool = False,
              urgent: bool = True) -> asyncio.Task[SyncResult]:
        """The sync in flight for `course`, or a new one. `urgent`: someone waits for it (a click,
        "Refresh now"), so it goes ahead of scheduled checks."""
        state = self._courses[course.name]
        if state.sync is None:
            def work() -> tuple[float, float, SyncResult, status.CourseStatus | None, tuple | None]:
                started, started_at = time.time(), self._clock()  # wall time for the record, clock for the TTL
                result = sync_course(self.config, course, allow_mass_delete=allow_mass_delete, progress=progress)
                # What was recorded, read back in this thread (a CLI sync may have added to it too).
                stamp = status.stamp(self.config, course.name)
                recorded = None if result.status_error else status.read_file(self.config, course.name)
                return started, started_at, result, recorded, stamp

            loop = asyncio.get_running_loop()

            def progress(event: Progress) -> None:  # called in the worker thread
                if self._progress_listeners:
                    loop.call_soon_threadsafe(self._tell, self._progress_listeners, event)

            state.job = self._lanes.submit(course.name, work, urgent=urgent)
            state.mass_delete = allow_mass_delete
            state.sync = loop.create_task(self._run(state, state.job), name=f"f2git-sync-{course.name}")
            # A crash is logged in _run; nobody may be awaiting a sync someone only started.
            state.sync.add_done_callback(lambda done: done.cancelled() or done.exception())
        elif urgent and state.job is not None:
            self._lanes.hurry(state.job)
        return state.sync

    async def refresh(self, course: CourseConfig, *, allow_mass_delete: bool = False,
                      urgent: bool = True) -> SyncResult:
        """Sync now and return the result, sharing a sync already in flight.

        A sync in flight without `allow_mass_delete` does not answer a request with it:
        that request waits for it and then runs its own.
        """
        state = self._courses[course.name]
        while allow_mass_delete and state.sync is not None and not state.mass_delete:
            await asyncio.gather(asyncio.shield(state.sync), return_exceptions=True)
        return await asyncio.shield(self.start(course, allow_mass_delete=allow_mass_delete, urgent=urgent))

    async def on_click(self, course: CourseConfig, client: str | None = None) -> str:
        """Before serving a fetch: refresh when stale, but wait at most `refresh_wait`.
        `client` (see `click_client`) ties one click's requests together.

        Returns the outcome: fresh, refreshed, timeout or failed."""
        state = self._courses[course.name]
        if client is not None and self._same_click(state, client):
            return "fresh"  # a later request of a click already served: not a click of its own
        waited_since = time.monotonic()
        await self._load_head(state)
        if not self.is_stale(course.name) and state.sync is None:
            outcome = "fresh"
        elif state.failed is not None and state.has_snapshot:
            # The source failed last time: retry in the background, but don't make every
            # student wait out refresh_wait while it stays down. The next click gets the fix.
            self.start(course)
            outcome = "failed"
        else:
            task = self.start(course)
            state.waiting += 1
            try:
                result = await asyncio.wait_for(asyncio.shield(task), timeout=self.config.server.refresh_wait)
                outcome = "refreshed" if result.ok else "failed"
            except asyncio.TimeoutError:
                log.info("course %s: refresh still running after %gs; serving the last snapshot",
                         course.name, self.config.server.refresh_wait)
                outcome = "timeout"
            except Exception:  # logged by _run; the last snapshot is still there to serve
                outcome = "failed"
            finally:
                state.waiting -= 1
        if client is not None and self.config.server.click_window > 0:
            state.clicks[client] = time.monotonic()
        self._tell(self._click_listeners, course.name, outcome, time.monotonic() - waited_since)
        return outcome

    def click_fetched(self, course: str, client: str) -> None:
        """The client fetches a pack: its click ends, its next request is a new click."""
        self._courses[course].clicks.pop(client, None)

    def _same_click(self, state: CourseState, client: str) -> bool:
        now, window = time.monotonic(), self.config.server.click_window
        for known, served in list(state.clicks.items()):
            if now - served >= window:
                del state.clicks[known]
        return client in state.clicks

    def _tell(self, listeners: list[Callable[..., None]], *args: Any) -> None:
        for listener in listeners:
            try:
                listener(*args)
            except Exception:
                log.exception("a refresh listener failed")

    async def _run(self, state: CourseState, job: Job) -> SyncResult:
        try:  # cancelled when the server stops before the sync started
            started, started_at, result, recorded, stamp = await job.future
        except Exception:
            # sync_course reports source and git trouble in its result; this is a bug.
            log.exception("course %s: sync crashed", state.name)
            state.failed = self._clock()
            crash = SyncResult(state.name, error="internal error during the sync (see the server log)")
            state.record = status.applied(state.record, crash, time.time())
            raise
        finally:
            state.sync = state.job = None
        self._remember(state, result, started, recorded, started_at)
        if recorded is not None:
            state.stamp = stamp
        self._tell(self._result_listeners, result)
        return result

    def _remember(self, state: CourseState, result: SyncResult, started: float,
                  recorded: status.CourseStatus | None, started_at: float) -> None:
        """Take in one outcome; when the disk refused it, the memory still has it, and says so."""
        head = result.commit if result.ok else state.record.commit
        if recorded is None:
            recorded = status.applied(state.record, result, started)
            if result.ok:  # the snapshot is fine, the server's record of it is not: not OK
                recorded.last_error, recorded.last_error_at = result.status_error, started
            log.error("course %s: %s; the outcome is kept in memory only", state.name, result.status_error)
            self._disk_checked = float("-inf")  # look at the disk again at the next health check
        recorded.commit = head
        state.record, state.status_error = recorded, result.status_error
        if result.ok:
            state.record.commit, state.head_known = result.commit, True
            state.checked, state.failed = started_at, None
        else:
            state.failed = self._clock()
            state.head_known = False  # main may have moved meanwhile (`f2git sync` beside the server)

    async def close(self) -> None:
        """Let syncs in flight finish (they hold file locks and write refs), then stop the workers."""
        self._lanes.drop_queued()  # never started: nothing to finish
        running = [state.sync for state in self._courses.values() if state.sync is not None]
        if running:
            log.info("waiting for %s to finish", counted(len(running), "sync"))
            await asyncio.gather(*running, return_exceptions=True)
        self._lanes.close()
