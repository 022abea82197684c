"""What every f2git handler shares: who is asking, which course, and how refusals look."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import tornado.web

from .auth import HubUnreachable, Identity, request_token
from .budgets import holder_of
from .connections import claim
from .ltisession import LtiScoped, session_identity
from .refresh import click_client

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
        auth = self.settings["f2git_auth"]
        identity = getattr(self, "identity", None)
        # an LTI instructor's session manages its courses only, whatever the policy grants
        return LtiScoped(auth) if identity is not None and identity.kind == "lti" else auth

    async def identify(self) -> Identity | None:
        """The LTI session's instructor when the browser holds one, else whom the policy names."""
        return session_identity(self) or await self.auth.identify(self)

    @property
    def refresher(self) -> "Refresher":
        return self.settings["f2git_refresher"]

    def check_same_origin(self) -> None:
        """A browser's POST must come from f2git's own pages. Browsers send `Origin` with every
        cross-site POST (forms and scripts alike); other clients (git, curl) send none."""
        origin = self.request.headers.get("Origin")
        if origin is not None:
            own = {self.request.host.lower(), urlsplit(self.config.server.public_url).netloc.lower()}
            if urlsplit(origin).netloc.lower() not in own:
                raise Refusal(403, f"cross-site request refused: Origin {origin!r} is not this server")
        elif self.request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise Refusal(403, "cross-site request refused")

    async def prepare(self) -> None:
        identity = await self.identify()
        if identity is None:
            raise Refusal(401, "authentication required")
        self.identity = identity
        self.count_against(identity)

    def count_against(self, identity: Identity) -> None:
        """From here the request's connection counts against `identity`, not the shared address."""
        refusal = claim(self.request, holder_of(identity.kind, identity.name, request_token(self)))
        if refusal:
            raise Refusal(503, refusal)

    def click_client(self) -> str:
        """Who clicks: one click's git requests (and pullhook's /remote) share its refresh."""
        return click_client(self.identity.kind, self.identity.name, self.request.remote_ip)

    def find_course(self, name: str) -> "CourseConfig":
        course = self.config.courses.get(name)
        if course is None and name in self.config.broken:  # the cause is for admins: log, dashboard
            raise Refusal(503, f"course {name!r} is not available: its configuration is broken")
        if course is None:
            raise Refusal(404, f"no course named {name!r}")
        return course

    def require_fetch(self, course: "CourseConfig") -> None:
        if not self.auth.may_fetch(self.identity, course):
            raise Refusal(403, self.auth.refusal(self.identity, course))

    async def admit(self, course: "CourseConfig") -> None:
        """May the asker fetch `course`? A refusal by the LMS roster first re-reads it (single-flight,
        waiting at most `refresh_wait`), so a student enrolled a minute ago gets in; then
        Refusal(403) with the reason in words about them."""
        keeper = self.settings.get("f2git_rosters")
        if self.auth.may_fetch(self.identity, course):
            if keeper is not None:
                keeper.refresh_if_due(course)  # a stale roster is read again in the background
            return
        if keeper is not None and course.members == "lms" and self.identity.kind == "user":
            await keeper.recheck(course, self.config.server.refresh_wait)
            if self.auth.may_fetch(self.identity, course):
                return
        raise Refusal(403, self.auth.refusal(self.identity, course))

    def require_manage(self, course: "CourseConfig | None") -> None:
        if not self.auth.may_manage(self.identity, course):
            what = f"course {course.name!r}" if course else "f2git"
            raise Refusal(403, f"{self.identity.name} may not manage {what}")

    def error_message(self, status_code: int, **kwargs: Any) -> str:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, (Refusal, HubUnreachable)):
            return error.message
        return self._reason

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Basic realm="f2git"')
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(self.error_message(status_code, **kwargs) + "\n")

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, (Refusal, HubUnreachable)):
            return  # an answer, not a fault; the access log has the status
        super().log_exception(typ, value, tb)


class JsonHandler(BaseHandler):
    """API handlers: JSON bodies, errors as {"error": message}. A POST comes from f2git's own
    origin or no browser, and its body, if any, is JSON: a web page can send neither."""

    async def prepare(self) -> None:
        if self.request.method not in ("GET", "HEAD", "OPTIONS"):
            self.check_same_origin()
            content_type = self.request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
            if self.request.body.strip() and content_type != "application/json":
                raise Refusal(415, "send the request body as JSON, with Content-Type: application/json")
        await super().prepare()

    def json_object(self) -> dict[str, Any]:
        """The request body as a JSON object ({} when empty), else a 400 that says why."""
        if not self.request.body.strip():
            return {}
        try:
            body = json.loads(self.request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise Refusal(400, f"request body is not valid JSON: {error}") from None
        if not isinstance(body, dict):
            raise Refusal(400, "request body must be a JSON object")
        return body

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data, indent=None, sort_keys=False) + "\n")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Basic realm="f2git"')
        self.write_json({"error": self.error_message(status_code, **kwargs)}, status_code)
