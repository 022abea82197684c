"""Refresh on click: one source request per change, not per student.

Every path that syncs a course in the server (a git click, the scheduler, the API) goes
through one `Refresher`, which keeps at most one sync per course in flight and lets
everyone who asks meanwhile share its result. A click only refreshes when the last check
is older than `refresh_ttl`, and waits for it at most `refresh_wait`; after that the last
snapshot is served while the sync finishes in the background.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from f2git import status
from f2git.config import Config, CourseConfig
from f2git.snapshot import Progress, SyncResult, sync_course
from f2git.store import CourseRepo

log = logging.getLogger("f2git.refresh")

class Refresher:
    """Single-flight syncs per course, run in worker threads off the event loop."""

    def __init__(self, config: Config, *, max_workers: int | None = None,
                 clock: Callable[[], float] = time.time):
        self.config = config
        self._clock = clock
        workers = max_workers or max(1, min(4, len(config.courses)))
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="f2git-sync")
        self._running: dict[str, asyncio.Task[SyncResult]] = {}
        self._mass_delete: dict[str, bool] = {}  # whether the sync in flight may mass-delete
        # When each course's source was last listed successfully, and last failed.
        self._last_check: dict[str, float] = {}
        self._last_failure: dict[str, float] = {}
        self._last_error: dict[str, str | None] = {}
        self._waiting: dict[str, int] = {}
        self._has_snapshot: set[str] = set()
        self._result_listeners: list[Callable[[SyncResult], None]] = []
        self._progress_listeners: list[Callable[[Progress], None]] = []
        self._click_listeners: list[Callable[[str, str, float], None]] = []
        for name in config.courses:
            record = status.read(config, name)
            self._last_check[name] = record.last_check or 0.0
            if record.last_error:
                self._last_failure[name] = record.last_error_at or 0.0
            if record.commit:
                self._has_snapshot.add(name)

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

    def last_error(self, course: str) -> str | None:
        """Why the last sync failed, or None if it succeeded."""
        if course in self._last_error:
            return self._last_error[course]
        return status.read(self.config, course).last_error

    async def has_snapshot(self, course: str) -> bool:
        """Whether the course has a snapshot to serve. History only grows: once true, always true."""
        if course not in self._has_snapshot:
            repo = CourseRepo.for_course(self.config, course)
            if await asyncio.to_thread(repo.head) is not None:
                self._has_snapshot.add(course)
        return course in self._has_snapshot

    def is_running(self, course: str) -> bool:
        return course in self._running

    def waiting(self, course: str) -> int:
        """How many clicks are waiting for the course's refresh right now."""
        return self._waiting.get(course, 0)

    def last_check(self, course: str) -> float:
        return self._last_check.get(course, 0.0)

    def is_stale(self, course: str) -> bool:
        """Older than the TTL. A failure also counts as a check, so a broken source is
        asked at most once per TTL, not once per click."""
        ttl = self.config.server.refresh_ttl
        now = self._clock()
        last = max(self._last_check.get(course, 0.0), self._last_failure.get(course, 0.0))
        return now - last >= ttl

    def start(self, course: CourseConfig, *, allow_mass_delete: bool = False) -> asyncio.Task[SyncResult]:
        """The sync in flight for `course`, or a new one."""
        task = self._running.get(course.name)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._run(course, allow_mass_delete), name=f"f2git-sync-{course.name}")
            # A crash is logged in _run; nobody may be awaiting a sync someone only started.
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._running[course.name] = task
            self._mass_delete[course.name] = allow_mass_delete
        return task

    async def refresh(self, course: CourseConfig, *, allow_mass_delete: bool = False) -> SyncResult:
        """Sync now and return the result, sharing a sync already in flight.

        A sync in flight without `allow_mass_delete` does not answer a request with it:
        that request waits for it and then runs its own.
        """
        while allow_mass_delete and course.name in self._running and not self._mass_delete[course.name]:
            await asyncio.gather(asyncio.shield(self._running[course.name]), return_exceptions=True)
        return await asyncio.shield(self.start(course, allow_mass_delete=allow_mass_delete))

    async def on_click(self, course: CourseConfig) -> str:
        """Before serving a fetch: refresh when stale, but wait at most `refresh_wait`.

        Returns the outcome: fresh, refreshed, timeout or failed."""
        waited_since = time.monotonic()
        if not self.is_stale(course.name) and not self.is_running(course.name):
            outcome = "fresh"
        elif course.name in self._last_failure and course.name in self._has_snapshot:
            # The source failed last time: retry in the background, but don't make every
            # student wait out refresh_wait while it stays down. The next click gets the fix.
            if not self.is_running(course.name):
                self.start(course)
            outcome = "failed"
        else:
            task = self.start(course)
            self._waiting[course.name] = self._waiting.get(course.name, 0) + 1
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
                self._waiting[course.name] -= 1
        self._tell(self._click_listeners, course.name, outcome, time.monotonic() - waited_since)
        return outcome

    def _tell(self, listeners: list[Callable[..., None]], *args: Any) -> None:
        for listener in listeners:
            try:
                listener(*args)
            except Exception:
                log.exception("a refresh listener failed")

    async def _run(self, course: CourseConfig, allow_mass_delete: bool) -> SyncResult:
        started = self._clock()
        loop = asyncio.get_running_loop()

        def progress(event: Progress) -> None:  # called in the worker thread
            if self._progress_listeners:
                loop.call_soon_threadsafe(self._tell, self._progress_listeners, event)

        try:
            result = await loop.run_in_executor(
                self._executor, lambda: sync_course(self.config, course, allow_mass_delete=allow_mass_delete,
                                                    progress=progress))
        except Exception:
            # sync_course reports source and git trouble in its result; this is a bug.
            log.exception("course %s: sync crashed", course.name)
            self._last_failure[course.name] = self._clock()
            self._last_error[course.name] = "internal error during the sync (see the server log)"
            raise
        finally:
            self._running.pop(course.name, None)
        if result.ok:
            self._has_snapshot.add(course.name)
            self._last_check[course.name] = started
            self._last_failure.pop(course.name, None)
            self._last_error[course.name] = None
        else:
            self._last_failure[course.name] = self._clock()
            self._last_error[course.name] = result.error
        self._tell(self._result_listeners, result)
        return result

    async def close(self) -> None:
        """Let syncs in flight finish (they hold file locks and write refs), then stop the workers."""
        running = list(self._running.values())
        if running:
            log.info("waiting for %d sync(s) to finish", len(running))
            await asyncio.gather(*running, return_exceptions=True)
        self._executor.shutdown(wait=True)
