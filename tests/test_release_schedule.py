"""Release-time refreshes: a Canvas file unlocking at 10:00 is in the repo right after 10:00,
not at the next period, also across a restart. A fake clock (time-machine) moves time; the
scheduler is woken as its own timer would, so nothing sleeps for real."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import time_machine

from f2git import status
from f2git.server.app import Schedule
from f2git.server.refresh import Refresher
from f2git.server.releases import RELEASE_DELAY, ReleaseSchedule
from f2git.store import CourseRepo
from tests.canvasfake import BASE, COURSE, NOW, TOKEN, fake, iso  # noqa: F401 (fixture)

UNLOCK = NOW + timedelta(hours=1)


@pytest.fixture
def course_config(fake, make_config, monkeypatch):
    monkeypatch.setenv("CANVAS_TOKEN", TOKEN)
    fake.publish({"week1/intro.ipynb": b'{"cells": []}\n'})
    fake.put("week1/solutions.ipynb", b'{"cells": ["42"]}\n', unlock_at=iso(UNLOCK))
    return make_config({"cs101": {"source": "canvas", "url": BASE, "course_id": COURSE, "token_env": "CANVAS_TOKEN",
                                  "schedule": 0}}, env={"CANVAS_TOKEN": TOKEN})


def files_in_repo(config) -> set[str]:
    repo = CourseRepo.for_course(config, "cs101")
    return set(repo.files(repo.head()))


class Running:
    """A server's refresher and schedule, started in the current loop (as after a restart)."""

    def __init__(self, config):
        self.refresher = Refresher(config)
        self.schedule = Schedule(config, self.refresher)
        self.synced = asyncio.Queue()
        self.refresher.on_result(self.synced.put_nowait)
        self.schedule.start()

    def release_job(self):
        return self.schedule.scheduler.get_job(ReleaseSchedule.job_id("cs101"))

    async def tick(self) -> None:
        """Let the scheduler look at the (moved) clock, as its timer does."""
        self.schedule.scheduler.wakeup()
        for _ in range(3):
            await asyncio.sleep(0)  # wakeup runs via call_soon_threadsafe, then submits the job

    async def stop(self) -> None:
        self.schedule.shutdown()
        await self.refresher.close()


def test_a_file_unlocking_later_is_in_the_repo_right_after_it_unlocks(course_config):
    config = course_config

    async def scenario(clock):
        server = Running(config)
        first = await server.refresher.refresh(config.courses["cs101"])
        assert first.ok and files_in_repo(config) == {"week1/intro.ipynb"}
        assert server.release_job().next_run_time == UNLOCK + RELEASE_DELAY
        assert server.schedule.next_run("cs101") == (UNLOCK + RELEASE_DELAY).timestamp()
        await server.synced.get()

        clock.move_to(UNLOCK - timedelta(minutes=1))
        await server.tick()
        assert server.release_job() is not None and server.synced.empty()  # not yet

        clock.move_to(UNLOCK + RELEASE_DELAY)
        await server.tick()
        released = await asyncio.wait_for(server.synced.get(), timeout=30)
        assert released.ok and released.added == 1
        assert files_in_repo(config) == {"week1/intro.ipynb", "week1/solutions.ipynb"}
        assert server.release_job() is None  # nothing more to come
        await server.stop()

    with time_machine.travel(NOW, tick=True) as clock:
        asyncio.run(scenario(clock))


def test_the_planned_release_survives_a_restart_and_a_missed_one_is_caught_up(course_config):
    config = course_config

    async def before_restart():
        server = Running(config)
        await server.refresher.refresh(config.courses["cs101"])
        await server.stop()

    async def after_restart(clock, *, past_release: bool):
        server = Running(config)  # a new process: only the status files remain
        if not past_release:
            assert server.release_job().next_run_time == UNLOCK + RELEASE_DELAY
            await server.stop()
            return
        await server.tick()
        caught_up = await asyncio.wait_for(server.synced.get(), timeout=30)
        assert caught_up.ok and "week1/solutions.ipynb" in files_in_repo(config)
        await server.stop()

    with time_machine.travel(NOW, tick=True) as clock:
        asyncio.run(before_restart())
        assert status.read(config, "cs101").next_release == UNLOCK.isoformat()
        asyncio.run(after_restart(clock, past_release=False))
        clock.move_to(UNLOCK + timedelta(minutes=30))  # the server was down at 10:00
        asyncio.run(after_restart(clock, past_release=True))


def test_a_failed_sync_keeps_the_planned_release(course_config, monkeypatch):
    config = course_config

    async def scenario():
        server = Running(config)
        await server.refresher.refresh(config.courses["cs101"])
        monkeypatch.setenv("CANVAS_TOKEN", "7~revoked-token-value")
        failed = await server.refresher.refresh(config.courses["cs101"])
        assert not failed.ok and failed.next_release is None
        assert server.release_job().next_run_time == UNLOCK + RELEASE_DELAY
        await server.stop()

    with time_machine.travel(NOW, tick=True):
        asyncio.run(scenario())
