"""The one handoff of a student's browser to the hub's nbgitpuller link, and the pages in words
a student reads when f2git cannot hand them on.

The front door (`/open/<course>/<path>`) and LTI resource-link launches both end here, after
each has decided in its own way that the student may have the course: count the open (no
names, see f2git.opens), check the course is not held or f2git overloaded, refresh like a click
(bounded by `refresh_wait`), then `303` to `<hub>/hub/user-redirect/git-pull?…` — or a page
saying why not (source failing: the snapshot's date and Continue; held: Continue; no files yet;
overloaded: 503 with Retry-After; after a retract, once per browser, what it did and a fresh copy).

`student_page` renders any of those pages (LTI refusals too) in the browser's language, with
every sentence from f2git.words.
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tornado.template

from f2git import holds, release, words
from f2git.links import BadLinkPath, course_link, with_backup
from f2git.opens import OpenCounts
from f2git.store import CourseRepo

from . import demokey, rewritenotice
from .refresh import click_client

if TYPE_CHECKING:
    import tornado.web

    from f2git.config import Config, CourseConfig
    from f2git.status import CourseStatus

    from .base import BaseHandler

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
LOADER = tornado.template.Loader(str(TEMPLATES))  # autoescaped: names come from links and rosters
RETRY_AFTER = 60  # s a busy f2git or hub asks the browser to wait


def student_page(handler: "tornado.web.RequestHandler", topic: str, status: int, *, reason: str | None = None,
                 continue_url: str | None = None, retry_after: int | None = None, title: str | None = None,
                 todo: str | None = None, retry: bool | None = None, continue_label: str = "continue",
                 new_tab: bool = False, fresh_url: str | None = None, **values: Any) -> None:
    """Finish the request with the page `topic` (`<topic>.title/.text/.todo` in f2git.words), in
    the language the browser asks for. `reason`: a sentence from elsewhere (a roster), shown as is.
    `title`, `todo`, `continue_label`: other catalogue keys than the topic's own; `retry`: offer
    "Try again" (a reload; by default when there is nothing to continue to); `new_tab`: Continue
    opens a new tab (out of an LMS's frame); `fresh_url`: a second way on, "Fresh copy"."""
    lang = words.language(handler.request.headers.get("Accept-Language"))
    handler.clear_header("Location")
    handler.set_status(status)
    handler.set_header("Content-Type", "text/html; charset=utf-8")
    handler.set_header("Content-Language", lang)
    handler.set_header("Vary", "Accept-Language")
    handler.set_header("Cache-Control", "no-store")
    if retry_after:
        handler.set_header("Retry-After", str(retry_after))
    todo = todo or f"{topic}.todo"
    page = LOADER.load("student.html").generate(
        lang=lang, base=app_base(handler), brand=words.say(lang, "brand"),
        title=words.say(lang, title or f"{topic}.title", **values), text=words.say(lang, f"{topic}.text", **values),
        todo=words.say(lang, todo, **values) if todo in words.WORDS else words.say(lang, "busy.todo"),
        reason=reason, reason_label=words.say(lang, "reason"),
        continue_url=continue_url, continue_label=words.say(lang, continue_label), new_tab=new_tab,
        fresh_url=fresh_url, fresh_label=words.say(lang, "fresh_copy"),
        retry=(bool(retry_after) or continue_url is None) if retry is None else retry,
        retry_label=words.say(lang, "try_again"))
    handler.finish(page)


def app_base(handler: "tornado.web.RequestHandler") -> str:
    """The path f2git's routes hang under for this request: the hub's service prefix, or ''."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/").rstrip("/")
    return prefix if prefix and handler.request.path.startswith(prefix + "/") else ""


def opens(handler: "tornado.web.RequestHandler") -> OpenCounts:
    return handler.settings["f2git_opens"]


def student_key(handler: "BaseHandler") -> str:
    """Who opens, as the click logic names them (a user, a token, else the address); only its
    keyed digest is kept."""
    identity = getattr(handler, "identity", None)
    if identity is None:
        return click_client("anonymous", "", handler.request.remote_ip)
    return click_client(identity.kind, identity.name, handler.request.remote_ip)


def held(config: "Config", course: str) -> tuple[bool, str | None]:
    """Whether the instructor holds the course (after a rollback no sync publishes over it:
    f2git/holds.py), and their reason if they gave one."""
    value = holds.read(config, course)
    if value is None:
        return False, None
    reason = value.get("reason")
    return True, reason if isinstance(reason, str) and reason else None


def overloaded(handler: "tornado.web.RequestHandler") -> bool:
    """Every git backend is busy and as many clones again are queued: a student sent on now would
    wait minutes for their files."""
    backends = handler.settings.get("f2git_backends")
    return backends is not None and backends.overloaded()


async def snapshot_moment(handler: "BaseHandler", record: "CourseStatus") -> float:
    """When the snapshot students get was made: the last change, else the head commit's time."""
    moment = record.last_change or record.last_success
    if moment:
        return moment
    log = await asyncio.to_thread(CourseRepo.for_course(handler.config, record.course).log, 1)
    return log[0]["time"] if log else 0.0


async def hand_off(handler: "BaseHandler", course: "CourseConfig", path: str | None = None,
                   app: str | None = None, branch: str = "main") -> None:
    """Refresh `course` like a click, then send the browser to its nbgitpuller link; or answer
    the page that says why not."""
    app = app or handler.config.hub.apps[0]
    try:
        if app not in handler.config.hub.apps:
            raise BadLinkPath(f"app {app!r} is not one of {', '.join(handler.config.hub.apps)}")
        if branch != "main" and branch.removeprefix("release/") not in release.pins(handler.config, course.name):
            raise BadLinkPath(f"course {course.name} serves no branch {branch!r}")
        link = demokey.link_for(handler, course_link(handler.config, course.name, path or None, app=app, branch=branch))
    except BadLinkPath as error:
        student_page(handler, "badlink", 400, course=course.name, detail=str(error))
        return
    opens(handler).opened(course.name, path or "", student_key(handler))
    is_held, why = held(handler.config, course.name)
    if is_held and await handler.refresher.has_snapshot(course.name):
        record = await handler.refresher.course_status(course.name)
        date = words.when(words.language(handler.request.headers.get("Accept-Language")),
                          await snapshot_moment(handler, record))
        student_page(handler, "held", 200, reason=why, continue_url=link, course=course.name, date=date)
        return
    if overloaded(handler):
        student_page(handler, "busy", 503, retry_after=RETRY_AFTER)
        return
    await handler.refresher.on_click(course)
    record = await handler.refresher.course_status(course.name)
    if record.commit is None:
        student_page(handler, "empty", 503, retry_after=RETRY_AFTER, course=course.name)
        return
    if record.last_error:
        date = words.when(words.language(handler.request.headers.get("Accept-Language")),
                          await snapshot_moment(handler, record))
        student_page(handler, "failing", 200, continue_url=link, course=course.name, date=date)
        return
    if tell_of_retract(handler, course.name, link):
        return
    handler.redirect(link, status=303)


def tell_of_retract(handler: "BaseHandler", course: str, link: str) -> bool:
    """Once per browser after a retract (without pullhook): the page that says what it did, with
    Continue and a fresh copy (nbgitpuller's backup=true) for a copy that began at a replaced
    snapshot. Whether one did is in the student's server, which f2git cannot see."""
    cookie = rewritenotice.DOOR_COOKIE + course
    info = rewritenotice.door_notice(handler.config, course, handler.get_cookie(cookie), time.time())
    if info is None:
        return False
    handler.set_cookie(cookie, rewritenotice.door_stamp(info), path=app_base(handler) + "/",
                       expires_days=rewritenotice.DOOR_DAYS, httponly=True, samesite="Lax",
                       secure=handler.request.protocol == "https")
    lang = words.language(handler.request.headers.get("Accept-Language"))
    since = info.get("since")  # a record written before f2git kept it: "before <date>" holds too
    everyone = bool(info.get("root")) or not isinstance(since, (int, float))
    student_page(handler, "rewritten_root" if everyone else "rewritten", 200, title="rewritten.title",
                 todo="rewritten.todo", continue_url=link, fresh_url=with_backup(link), course=course,
                 date=words.when(lang, info["last"]), since=words.when(lang, since if not everyone else info["last"]))
    return True
