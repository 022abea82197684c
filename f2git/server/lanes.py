"""Sync capacity, shared fairly between courses.

Syncs run in threads (connectors and git block). `workers` syncs run at once; demand (a
click, "Refresh now", the API) goes ahead of scheduled checks; and a sync that has run
longer than `slow_after` stops counting against `workers`: courses whose source trickles or
hangs do not hold the capacity healthy courses need. At most `limit` sync threads exist in
all, the bound on how many hung courses are outlived (the refresher runs at most one sync per
course, so a course never holds more than one thread).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

log = logging.getLogger("f2git.refresh")


class Job:
    __slots__ = ("name", "call", "urgent", "order", "future", "counted", "timer")

    def __init__(self, name: str, call: Callable[[], Any], urgent: bool, order: int,
                 future: asyncio.Future):
        self.name, self.call, self.urgent, self.order, self.future = name, call, urgent, order, future
        self.counted = False  # holds one of the `workers`
        self.timer: asyncio.TimerHandle | None = None

    def rank(self) -> tuple[bool, int]:
        return (not self.urgent, self.order)


class SyncLanes:
    def __init__(self, workers: int, limit: int, slow_after: float):
        self.workers = workers
        self.limit = max(limit, workers)
        self.slow_after = slow_after
        self._executor = ThreadPoolExecutor(max_workers=self.limit, thread_name_prefix="f2git-sync")
        self._queue: list[Job] = []
        self._counted = 0  # running syncs that hold a worker
        self._running = 0  # all running syncs
        self._order = itertools.count()

    def submit(self, name: str, call: Callable[[], Any], *, urgent: bool) -> Job:
        """Queue `call` (run in a thread); its result arrives in `job.future`. Call in the loop."""
        job = Job(name, call, urgent, next(self._order), asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._dispatch()
        return job

    def hurry(self, job: Job) -> None:
        """Someone waits for `job` now: put it ahead of the scheduled checks."""
        if not job.urgent:
            job.urgent = True
            self._dispatch()

    def queued(self) -> int:
        return len(self._queue)

    def running(self) -> int:
        return self._running

    def _dispatch(self) -> None:
        while self._queue and self._counted < self.workers and self._running < self.limit:
            job = min(self._queue, key=Job.rank)
            self._queue.remove(job)
            self._start(job)

    def _start(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        job.counted = True
        self._counted += 1
        self._running += 1
        job.timer = loop.call_later(self.slow_after, self._slow, job)
        done: Future = self._executor.submit(job.call)
        done.add_done_callback(lambda finished: loop.call_soon_threadsafe(self._finished, job, finished))

    def _slow(self, job: Job) -> None:
        if job.counted:
            job.counted = False
            self._counted -= 1
            log.info("course %s: sync still running after %gs; it no longer holds one of the %d workers",
                     job.name, self.slow_after, self.workers)
            self._dispatch()

    def _finished(self, job: Job, finished: Future) -> None:
        if job.timer is not None:
            job.timer.cancel()
        if job.counted:
            self._counted -= 1
        self._running -= 1
        if not job.future.done():
            error = finished.exception()
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(finished.result())
        self._dispatch()

    def drop_queued(self) -> None:
        """Cancel the syncs that have not started (the server stops)."""
        for job in self._queue:
            job.future.cancel()
        self._queue.clear()

    def close(self) -> None:
        """After the running syncs finished: stop the threads."""
        self._executor.shutdown(wait=True)
