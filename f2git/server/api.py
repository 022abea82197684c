"""The JSON API (course statuses, refresh now) and the health check."""
from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

import tornado.web

from f2git import status
from f2git.config import CourseConfig

from .base import JsonHandler, Refusal

# Every key a refresh request body may carry.
REFRESH_OPTIONS = {"allow_mass_delete": bool}


class CourseStatusHandler(JsonHandler):
    async def course_json(self, course: CourseConfig, *, history: bool) -> dict[str, Any]:
        # status.read asks git for the commit: off the event loop
        record = (await asyncio.to_thread(status.read, self.config, course.name)).to_json()
        if not history:
            record.pop("history", None)
        next_run: Callable[[str], float | None] = self.settings.get("f2git_next_refresh") or (lambda name: None)
        return {
            **record,
            "name": course.name,
            "source": course.source,
            "schedule": course.schedule,
            "git_url": f"{self.config.server.public_url}/git/{course.name}",
            "refreshing": self.refresher.is_running(course.name),
            "next_refresh": next_run(course.name),
        }


class CoursesHandler(CourseStatusHandler):
    async def get(self) -> None:
        courses = [course for course in self.config.courses.values()
                   if self.auth.may_fetch(self.identity, course)]
        records = await asyncio.gather(*(self.course_json(course, history=False) for course in courses))
        # courses whose config is broken are not served; who manages sees why (config.broken)
        broken = ([{"name": name, "config_error": error} for name, error in self.config.broken.items()]
                  if self.config.broken and self.auth.may_manage(self.identity, None) else [])
        self.write_json({"courses": list(records), "broken": broken})


class CourseHandler(CourseStatusHandler):
    async def get(self, name: str) -> None:
        course = self.find_course(name)
        self.require_fetch(course)
        self.write_json(await self.course_json(course, history=True))


class RefreshHandler(JsonHandler):
    async def post(self, name: str) -> None:
        course = self.find_course(name)
        self.require_manage(course)
        options = self.refresh_options()
        result = await self.refresher.refresh(course, **options)
        self.write_json(result.to_json())

    def refresh_options(self) -> dict[str, Any]:
        if not self.request.body.strip():
            return {}
        try:
            body = json.loads(self.request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise Refusal(400, f"request body is not valid JSON: {error}") from None
        if not isinstance(body, dict):
            raise Refusal(400, "request body must be a JSON object")
        for key, value in body.items():
            if key not in REFRESH_OPTIONS:
                raise Refusal(400, f"unknown option {key!r} (known: {', '.join(REFRESH_OPTIONS)})")
            if not isinstance(value, REFRESH_OPTIONS[key]):
                raise Refusal(400, f"option {key!r} must be true or false")
        return body


class HealthHandler(tornado.web.RequestHandler):
    """No authentication: load balancers and `make run` ask it."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish("ok")


ROUTES = [
    (r"/api/courses/?", CoursesHandler),
    (r"/api/courses/([^/]+)/?", CourseHandler),
    (r"/api/courses/([^/]+)/refresh/?", RefreshHandler),
    (r"/healthz", HealthHandler),
]
