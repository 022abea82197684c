"""The dashboard's release-control forms (f2git/release.py does the work, in a worker thread):

    POST /courses/<c>/retract        paths (one per line), reason, confirm=yes
    POST /courses/<c>/release-again  path
    POST /courses/<c>/rollback       commit
    POST /courses/<c>/resume

Managers only, XSRF-checked like every dashboard POST; the answer is the course page (303).
"""
from __future__ import annotations

import asyncio

from f2git import release

from .base import Refusal
from .dashboard import DashboardHandler
from .releasectl import LOCK_WAIT, after_rewrite, released


class RetractAction(DashboardHandler):
    root = "../../"

    async def post(self, name: str) -> None:
        course = self.managed_course(name)
        if self.get_body_argument("confirm", "") != "yes":
            raise Refusal(400, "Tick the box that confirms what a retract does and cannot do, then retract again.")
        paths = [line.strip() for line in self.get_body_argument("paths", "").splitlines() if line.strip()]
        result = await released(release.retract, self.config, course, paths,
                                reason=self.get_body_argument("reason", ""), who=self.identity.name,
                                timeout=LOCK_WAIT)
        await after_rewrite(self, course.name, result.commit)
        self.redirect(f"../{course.name}#release-control", status=303)


class ReleaseAgainAction(DashboardHandler):
    root = "../../"

    async def post(self, name: str) -> None:
        course = self.managed_course(name)
        await released(release.release_again, self.config, course, [self.get_body_argument("path", "")])
        self.refresher.start(course)  # publishes it when the source offers it
        self.redirect(f"../{course.name}#release-control", status=303)


class RollbackAction(DashboardHandler):
    root = "../../"

    async def post(self, name: str) -> None:
        course = self.managed_course(name)
        result = await released(release.rollback, self.config, course,
                                self.get_body_argument("commit", "").strip(), who=self.identity.name,
                                timeout=LOCK_WAIT)
        await after_rewrite(self, course.name, result.commit, rewritten=False)
        self.redirect(f"../{course.name}#release-control", status=303)


class ResumeAction(DashboardHandler):
    root = "../../"

    async def post(self, name: str) -> None:
        course = self.managed_course(name)
        if await asyncio.to_thread(release.resume, self.config, course):
            self.refresher.start(course)
        self.redirect(f"../{course.name}#release-control", status=303)


def routes(course: str) -> list[tuple]:
    return [(course + r"/retract", RetractAction), (course + r"/release-again", ReleaseAgainAction),
            (course + r"/rollback", RollbackAction), (course + r"/resume", ResumeAction)]
