"""What every f2git handler shares: who is asking, which course, and how refusals look."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import tornado.web

from .auth import Identity

if TYPE_CHECKING:
    from f2git.config import Config, CourseConfig

    from .auth import Auth
    from .refresh import Refresher


class Refusal(tornado.web.HTTPError):
    """An expected refusal whose message the client reads (no traceback, no error log)."""

    def __init__(self, status: int, message: str):
        super().__init__(status)
        self.message = message


class BaseHandler(tornado.web.RequestHandler):
    """Authenticates in prepare(); answers refusals as plain text (what git prints)."""

    identity: Identity

    @property
    def config(self) -> "Config":
        return self.settings["f2git_config"]

    @property
    def auth(self) -> "Auth":
        return self.settings["f2git_auth"]

    @property
    def refresher(self) -> "Refresher":
        return self.settings["f2git_refresher"]

    async def prepare(self) -> None:
        identity = await self.auth.identify(self)
        if identity is None:
            raise Refusal(401, "authentication required")
        self.identity = identity

    def find_course(self, name: str) -> "CourseConfig":
        course = self.config.courses.get(name)
        if course is None and name in self.config.broken:  # the cause is for admins: log, dashboard
            raise Refusal(503, f"course {name!r} is not available: its configuration is broken")
        if course is None:
            raise Refusal(404, f"no course named {name!r}")
        return course

    def require_fetch(self, course: "CourseConfig") -> None:
        if not self.auth.may_fetch(self.identity, course):
            raise Refusal(403, f"{self.identity.name} may not read course {course.name!r}")

    def require_manage(self, course: "CourseConfig | None") -> None:
        if not self.auth.may_manage(self.identity, course):
            what = f"course {course.name!r}" if course else "f2git"
            raise Refusal(403, f"{self.identity.name} may not manage {what}")

    def error_message(self, status_code: int, **kwargs: Any) -> str:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, Refusal):
            return error.message
        return self._reason

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Basic realm="f2git"')
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(self.error_message(status_code, **kwargs) + "\n")

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, Refusal):
            return  # an answer, not a fault; the access log has the status
        super().log_exception(typ, value, tb)


class JsonHandler(BaseHandler):
    """API handlers: JSON bodies, errors as {"error": message}."""

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data, indent=None, sort_keys=False) + "\n")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Basic realm="f2git"')
        self.write_json({"error": self.error_message(status_code, **kwargs)}, status_code)
