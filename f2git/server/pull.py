"""What the hub side asks: pullhook before a fetch, instructors for a course's link.

    GET /api/courses/<course>/remote        refresh like a click (TTL, single-flight, bounded
                                            wait), then where to fetch: f2git or the mirror
    GET /api/courses/<course>/link?path=…   the nbgitpuller link (optional `hub=` URL)
"""
from __future__ import annotations

from urllib.parse import urlsplit

from f2git.links import BadLinkPath, course_link, git_url, repo_url
from f2git.mirror import without_userinfo

from .base import JsonHandler, Refusal


class RemoteHandler(JsonHandler):
    """Asked by pullhook's `git-remote-f2git` once per git command of a click."""

    async def get(self, name: str) -> None:
        course = self.find_course(name)
        self.require_fetch(course)
        mirror = self.mirror_for_students(course.mirror, self.refresher.status(name).mirror_error)
        if mirror:
            # f2git's own git endpoint refreshes on click; a mirror cannot, so refresh here.
            # Per git command: f2git never sees the fetch that would end a click (see on_click).
            await self.refresher.on_click(course)
            mirror = self.mirror_for_students(course.mirror, self.refresher.status(name).mirror_error)
        self.write_json({"course": name, "git_url": git_url(self.config, name), "mirror": mirror})

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
