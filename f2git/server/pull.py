"""What the hub side asks: pullhook before a fetch, instructors for a course's link.

    GET /api/courses/<course>/remote        refresh like a click (TTL, single-flight, bounded
                                            wait), then where to fetch: f2git or the mirror
    GET /api/courses/<course>/link?path=…   the nbgitpuller link (optional `hub=` URL)
"""
from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

from f2git import explain, status
from f2git.release import rewritten
from f2git.links import BadLinkPath, course_link, git_url, repo_url
from f2git.mirror import without_userinfo

from .base import JsonHandler, Refusal
from .dashboard import source_label

log = logging.getLogger("f2git.pull")


class RemoteHandler(JsonHandler):
    """Asked by pullhook's `git-remote-f2git` once per git command of a click."""

    async def get(self, name: str) -> None:
        course = self.find_course(name)
        await self.admit(course)
        record = await self.refresher.course_status(name)
        mirror = self.mirror_for_students(course.mirror, record.mirror_error)
        if mirror:
            # f2git's own git endpoint refreshes on click; a mirror cannot, so refresh here.
            # Per git command: f2git never sees the fetch that would end a click (see on_click).
            await self.refresher.on_click(course)
            record = await self.refresher.course_status(name)
            mirror = self.mirror_for_students(course.mirror, record.mirror_error)
        self.write_json({"course": name, "git_url": git_url(self.config, name), "mirror": mirror,
                         "notice": self.notice(source_label(course), record, time.time()),
                         "rewrites": rewritten(self.config, name)})  # pullhook then asks /rewrites

    @staticmethod
    def notice(source: str, record: status.CourseStatus, now: float) -> str | None:
        """What the student reads before a fetch when the source fails but a snapshot is served
        (without a snapshot, the git endpoint's answer says why)."""
        if not record.last_error or not record.commit:
            return None
        since = record.last_change or record.last_success
        age = f", {explain.age(now - since)} old" if since else ""
        return (f"{record.course}: the files could not be updated from {source} since"
                f" {explain.when(record.last_error_at or now)}; you get the last snapshot"
                f"{' of ' + explain.when(since) if since else ''}{age}. Your instructor sees this on the f2git dashboard.")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # pullhook shows the student why; the log keeps who was refused and why
        identity = getattr(self, "identity", None)  # none when the login itself was refused
        log.info("refused %s's pull of course %s: HTTP %s, %s", identity.name if identity else "an unknown user",
                 self.path_args[0] if self.path_args else "?", status_code, self.error_message(status_code, **kwargs))
        super().write_error(status_code, **kwargs)

    @staticmethod
    def mirror_for_students(mirror: str, mirror_error: str | None) -> str | None:
        """The mirror when students can fetch it and it has the newest snapshot, else None (f2git)."""
        if not mirror or mirror_error or urlsplit(mirror).scheme not in ("http", "https"):
            return None
        return without_userinfo(mirror)


class LinkHandler(JsonHandler):
    def get(self, name: str) -> None:
        course = self.find_course(name)
        self.require_fetch(course)
        path = self.get_argument("path", None)
        hub = self.get_argument("hub", None)
        if hub is not None and urlsplit(hub).scheme not in ("http", "https"):
            raise Refusal(400, f"hub must be an http(s) URL, not {hub!r}")
        try:
            link = course_link(self.config, name, path, hub)
        except BadLinkPath as error:
            raise Refusal(400, str(error)) from None
        self.write_json({"course": name, "path": path, "repo": repo_url(self.config, name), "link": link})


ROUTES = [
    (r"/api/courses/([^/]+)/remote/?", RemoteHandler),
    (r"/api/courses/([^/]+)/link/?", LinkHandler),
]
