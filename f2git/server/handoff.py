"""The one handoff of a student's browser to the hub's nbgitpuller link.

The front door (`/open/<course>/<path>`) and LTI resource-link launches both end here, after
each has decided in its own way that the student may have the course: refresh like a click
(bounded by `refresh_wait`), then `303` to `<hub>/hub/user-redirect/git-pull?…`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from f2git.links import course_link

if TYPE_CHECKING:
    from f2git.config import CourseConfig

    from .base import BaseHandler


async def hand_off(handler: "BaseHandler", course: "CourseConfig", path: str | None = None,
                   app: str | None = None) -> None:
    """Refresh `course` like a click, then send the browser to its nbgitpuller link."""
    await handler.refresher.on_click(course)
    app = app or handler.config.hub.apps[0]
    handler.redirect(course_link(handler.config, course.name, path or None, app=app), status=303)
