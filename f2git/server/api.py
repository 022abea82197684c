"""The JSON API (course statuses, refresh now) and the health check."""
from __future__ import annotations

import asyncio
from typing import Any, Callable

import tornado.web

from f2git import holds
from f2git.config import CourseConfig

from .auth import HubUnreachable
from .base import BaseHandler, JsonHandler, Refusal

# Every key a refresh request body may carry.
REFRESH_OPTIONS = {"allow_mass_delete": bool}
# What a caller who may fetch but not manage (a student) sees of a course: not the next
# unlock time, not errors (they name sources and paths), not skipped names or history.
STUDENT_KEYS = ("name", "git_url", "commit", "last_check", "last_change", "refreshing")


class CourseStatusHandler(JsonHandler):
    async def course_json(self, course: CourseConfig, *, history: bool) -> dict[str, Any]:
        # what the server knows (in memory; the head loads off the loop the first time)
        record = (await self.refresher.course_status(course.name)).to_json()
        if not history:
            record.pop("history", None)
        next_run: Callable[[str], float | None] = self.settings.get("f2git_next_refresh") or (lambda name: None)
        full = {
            **record,
            "name": course.name,
            "source": course.source,
            "schedule": course.schedule,
            "git_url": f"{self.config.server.public_url}/git/{course.name}",
            "refreshing": self.refresher.is_running(course.name),
            "status_error": self.refresher.status_error(course.name),  # the outcome is in memory only
            "next_refresh": next_run(course.name),
            "on_hold": holds.read(self.config, course.name),  # after a rollback: syncs publish nothing
        }
        if self.auth.may_manage(self.identity, course):
            return full
        return {**{key: full[key] for key in STUDENT_KEYS}, "ok": full["last_error"] is None}


class CoursesHandler(CourseStatusHandler):
    async def get(self) -> None:
        courses = [course for course in self.config.courses.values() if self.auth.may_fetch(self.identity, course)]
        records = await asyncio.gather(*(self.course_json(course, history=False) for course in courses))
        # courses whose config is broken are not served; who manages sees why (config.broken)
        broken = ([{"name": name, "config_error": error} for name, error in self.config.broken.items()]
                  if self.config.broken and self.auth.may_manage(self.identity, None) else [])
        self.write_json({"courses": list(records), "broken": broken})


class CourseHandler(CourseStatusHandler):
    async def get(self, name: str) -> None:
        course = self.find_course(name)
        self.require_fetch(course)  # who manages it may fetch it (auth.py)
        self.write_json(await self.course_json(course, history=True))


class RefreshHandler(JsonHandler):
    """Managers sync now. Callers who may only fetch get what a click gets: a refresh when
    the last check is older than `refresh_ttl`, waited for at most `refresh_wait`."""

    async def post(self, name: str) -> None:
        course = self.find_course(name)
        options = self.refresh_options()
        if not self.auth.may_manage(self.identity, course):
            self.require_fetch(course)
            if options:
                self.require_manage(course)  # confirming a mass deletion is the instructor's call
            outcome = await self.refresher.on_click(course)
            record = await self.refresher.course_status(course.name)
            self.write_json({"course": course.name, "outcome": outcome, "commit": record.commit})
            return
        result = await self.refresher.refresh(course, **options)
        self.write_json(result.to_json())

    def refresh_options(self) -> dict[str, Any]:
        body = self.json_object()
        for key, value in body.items():
            if key not in REFRESH_OPTIONS:
                raise Refusal(400, f"unknown option {key!r} (known: {', '.join(REFRESH_OPTIONS)})")
            if not isinstance(value, REFRESH_OPTIONS[key]):
                raise Refusal(400, f"option {key!r} must be true or false")
        return body


class HealthHandler(BaseHandler):
    """No authentication needed: load balancers and `make run` ask it. 200 "ok"; 503 "degraded"
    when the server cannot record what it does (data dir full or read-only) or a backup fails.
    The causes name courses and paths, so only who may manage f2git reads them."""

    async def prepare(self) -> None:
        try:
            self.identity = await self.auth.identify(self)
        except HubUnreachable:
            self.identity = None  # the hub being down is no reason to call f2git unhealthy

    async def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        problems = await self.refresher.problems()
        if not problems:
            self.finish("ok")
            return
        self.set_status(503)
        if self.identity is not None and self.auth.may_manage(self.identity, None):
            self.finish("degraded: " + "; ".join(problems) + "\n")
        else:
            self.finish("degraded\n")


ROUTES = [
    (r"/api/courses/?", CoursesHandler),
    (r"/api/courses/([^/]+)/?", CourseHandler),
    (r"/api/courses/([^/]+)/refresh/?", RefreshHandler),
    (r"/healthz", HealthHandler),
]
