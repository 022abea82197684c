"""`GET /open/<course>[/<path>]?app=…`: the front door of a student's link.

Signs the student in (the hub's OAuth, as the dashboard does; with `auth = "none"` nobody signs
in), admits them to the course, then hands them off (handoff.hand_off: health, held, overloaded,
refresh like a click, 303 to the hub's nbgitpuller link). Whatever stops them is said on a page
of f2git's own, in their language, with what to do: nbgitpuller's page can only show its fixed
headlines. A name that is no course gets "renamed?", never a list of courses.
"""
from __future__ import annotations

from .auth import HubUnreachable
from .base import BaseHandler, Refusal
from .handoff import RETRY_AFTER, hand_off, student_page


NAME_SHOWN = 64  # characters of an unknown course's name the page repeats


class DoorHandler(BaseHandler):
    async def prepare(self) -> None:
        try:
            identity = await self.auth.identify(self)
        except HubUnreachable:
            student_page(self, "hub_busy", 503, retry_after=RETRY_AFTER)
            return
        if identity is None:
            login = self.auth.login_url(self)
            if login:
                self.redirect(login)
            else:
                student_page(self, "login", 401)
            return
        self.identity = identity

    async def get(self, course: str, path: str | None = None) -> None:
        found = self.config.courses.get(course)
        if found is None:
            shown = course if len(course) <= NAME_SHOWN else course[:NAME_SHOWN] + "…"  # a link is no letter
            student_page(self, "broken" if course in self.config.broken else "missing",
                         503 if course in self.config.broken else 404, course=shown)
            return
        try:
            await self.admit(found)
        except Refusal as refusal:
            student_page(self, "refused", refusal.status_code, reason=refusal.message,
                         user=self.identity.name, course=course)
            return
        await hand_off(self, found, path, self.get_query_argument("app", "") or None,
                       self.get_query_argument("branch", "") or "main")


ROUTES = [(r"/open/(?P<course>[^/]+)(?:/(?P<path>.+))?", DoorHandler)]
