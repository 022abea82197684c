"""The instructors' dashboard: every course's health, one course's history, refresh with
live progress (server-sent events), a dry-run preview of the next release, and a link builder.

Server-rendered tornado templates (autoescaped: file names are hostile input) and a little
JavaScript that only enhances forms which also work without it. Every page needs
`may_manage`; every POST carries tornado's XSRF token.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import tornado.iostream
import tornado.web

import connectors
from connectors._time import schedulable
from connectors.base import counted
from f2git import explain, filetree, holds, release, roster, status, words
from f2git.config import APPS, CourseConfig
from f2git.links import BadLinkPath, check_in_course, course_link, door_link, snippets
from f2git.outcome import Progress, SyncResult
from f2git.snapshot import sync_course
from f2git.store import CourseRepo
from f2git.syncstate import StateStore

from . import demokey
from .base import BaseHandler, Refusal
from .ltisession import frame_ancestors
from .refresh import Refresher
from .releases import release_time

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STATIC = Path(__file__).resolve().parent.parent / "static"
KEEPALIVE = 15.0  # s between SSE comments, so proxies keep an idle progress stream open
STALE_GRACE = 60.0  # s a scheduled check may be late before the course counts as stale
HISTORY_SNAPSHOTS = 50  # snapshots from the repo log, where the status history ends


# -- what the pages say ------------------------------------------------------------------------

@dataclass
class Moment:
    """A point in time inside a sentence; the template renders it as <time>."""

    epoch: float

    @property
    def iso(self) -> str:
        return datetime.fromtimestamp(self.epoch, timezone.utc).isoformat(timespec="seconds")

    def __str__(self) -> str:
        return datetime.fromtimestamp(self.epoch, timezone.utc).strftime("%-d %b %H:%M UTC")


@dataclass
class Health:
    state: str  # ok | stale | failing
    sentence: list[str | Moment] = field(default_factory=list)  # the cause, in an instructor's words
    detail: str | None = None  # the exact error text

    @property
    def label(self) -> str:
        return {"ok": "OK", "stale": "Stale", "failing": "Failing"}[self.state]


def source_label(course: CourseConfig) -> str:
    try:
        return connectors.connector_class(course.source).label
    except Exception:  # an optional dependency missing: the course fails with that error anyway
        return course.source


def source_location(course: CourseConfig) -> str:
    """Where the files come from, in the connector's words (no credentials, no query strings)."""
    try:
        return connectors.connector_class(course.source).describe(course.options)
    except Exception:  # as above
        return ""


def mass_delete_refused(record: status.CourseStatus) -> bool:
    """The last sync stopped because it would delete most files (see snapshot.SyncRefused)."""
    return record.mass_delete_refused is not None


def health(course: CourseConfig, record: status.CourseStatus, now: float) -> Health:
    snapshot: list[str | Moment]
    if record.commit:
        snapshot = [" — students still get the snapshot of ", Moment(record.last_change or record.last_success or 0)]
    else:
        snapshot = [" — students get no files yet: there is no snapshot."]
    if record.last_error:
        when = Moment(record.last_error_at or now)
        if record.auth_failed:
            first: list[str | Moment] = [f"{source_label(course)} rejected the credentials on ", when]
        elif mass_delete_refused(record):
            first = ["The sync on ", when, " was stopped because it would delete most files"]
        else:
            first = ["The sync on ", when, " failed"]
        return Health("failing", first + snapshot, record.last_error)
    if record.last_check is None:
        return Health("stale", ["Not synced yet"], None)
    if course.schedule > 0 and now - record.last_check > 2 * course.schedule + STALE_GRACE:
        return Health("stale", ["Not checked since ", Moment(record.last_check),
                                f" although it should be every {_interval(course.schedule)}"], None)
    sentence: list[str | Moment] = ["Up to date: checked ", Moment(record.last_check)]
    if record.backup_error:  # students are served; the history is not safe against losing data_dir
        return Health("failing", [*sentence, " — but its backup failed: if data_dir is lost, students'"
                                  " next click fails"], record.backup_error)
    return Health("ok", sentence, f"copying to the mirror failed: {record.mirror_error}" if record.mirror_error
                  else None)


def _interval(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


@dataclass
class HistoryItem:
    moment: Moment
    commit: str | None = None  # a snapshot
    counts: dict[str, int] | None = None  # added/modified/deleted, when the status recorded them
    paths: dict[str, list[str]] = field(default_factory=dict)
    summary: str | None = None  # the commit's subject, for snapshots older than the status history
    error: str | None = None  # a failure
    repeats: int = 1  # the same failure, this many times in a row
    since: Moment | None = None  # the first of those
    control: dict | None = None  # a retract or rollback (f2git/release.py), as the status recorded it


def history(record: status.CourseStatus, log: list[dict], limit: int = 50) -> list[HistoryItem]:
    """Snapshots and failures, newest first. Syncs that changed nothing are left out (the
    last check says enough), a run of one failure is shown once with its count, and
    snapshots older than the status history come from the repo's log."""
    items: list[HistoryItem] = []
    for event in record.history:
        moment = Moment(event["time"])
        if not event.get("ok"):
            last = items[-1] if items else None
            if last is not None and last.error == event.get("error"):
                last.repeats += 1
                last.since = moment
            else:
                items.append(HistoryItem(moment, error=event.get("error") or "unknown error"))
        elif event.get("kind") in ("retract", "rollback"):
            items.append(HistoryItem(moment, commit=event.get("commit"), control=event))
        elif event.get("changed") and event.get("commit"):
            items.append(HistoryItem(moment, commit=event["commit"], paths=event.get("paths") or {},
                                     counts={k: event.get(k, 0) for k in ("added", "modified", "deleted")}))
    known = {item.commit for item in items if item.commit}
    oldest = record.history[-1]["time"] if record.history else float("inf")
    items += [HistoryItem(Moment(entry["time"]), commit=entry["commit"], summary=entry["message"])
              for entry in log if entry["commit"] not in known and entry["time"] < oldest]
    return items[:limit]


def result_message(result: SyncResult, snapshot: str | None) -> str:
    """What the live status says when a refresh ends; `snapshot` is the commit students get now."""
    if not result.ok:
        return explain.failure(result.error, snapshot)
    if not result.changed:
        return "Finished: nothing changed."
    return (f"Finished: {result.added} added, {result.modified} changed, {result.deleted} deleted;"
            f" snapshot {(result.commit or '')[:10]}.")


# -- live progress ------------------------------------------------------------------------------

class Subscriber:
    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.result: SyncResult | None = None


class ProgressBoard:
    """The latest progress of each course's sync, and the event streams waiting for more."""

    def __init__(self, refresher: Refresher):
        self.latest: dict[str, Progress] = {}
        self.results: dict[str, SyncResult] = {}
        self._subscribers: dict[str, set[Subscriber]] = {}
        refresher.on_progress(self._progress)
        refresher.on_result(self._finished)

    def subscribe(self, course: str) -> Subscriber:
        subscriber = Subscriber()
        self._subscribers.setdefault(course, set()).add(subscriber)
        return subscriber

    def unsubscribe(self, course: str, subscriber: Subscriber) -> None:
        self._subscribers.get(course, set()).discard(subscriber)

    def _progress(self, event: Progress) -> None:
        if event.phase == "finished":
            return  # the result, with what changed, follows
        self.latest[event.course] = event
        for subscriber in self._subscribers.get(event.course, ()):
            subscriber.wake.set()

    def _finished(self, result: SyncResult) -> None:
        self.latest.pop(result.course, None)
        self.results[result.course] = result
        for subscriber in self._subscribers.get(result.course, ()):
            subscriber.result = result
            subscriber.wake.set()


def progress_json(event: Progress) -> dict[str, Any]:
    return {"phase": event.phase, "done": event.done, "total": event.total, "path": event.path}


def finished_json(result: SyncResult, snapshot: str | None) -> dict[str, Any]:
    return {"phase": "finished", "ok": result.ok, "changed": result.changed, "commit": result.commit,
            "added": result.added, "modified": result.modified, "deleted": result.deleted,
            "error": result.error, "message": result_message(result, snapshot)}


# -- handlers -----------------------------------------------------------------------------------

def _static_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


STATIC_VERSION = _static_version()


class DashboardHandler(BaseHandler):
    """HTML pages for people: a browser without a login is sent to the login page."""

    root = "./"  # relative URL of the app root, so the pages work under any prefix

    def get_template_path(self) -> str:
        return str(TEMPLATES)

    async def prepare(self) -> None:
        identity = await self.identify()
        if identity is None:
            login = self.auth.login_url(self) if self.request.method == "GET" else None
            if login:
                self.redirect(login)
                return
            raise Refusal(401, "Please log in to see the f2git dashboard.")
        self.identity = identity
        self.count_against(identity)
        if self.request.method == "POST":
            self.check_xsrf_cookie()
        demokey.admit(self)  # `make run`'s printed dashboard link: its browser may open the demo's JupyterLab

    def get_template_namespace(self) -> dict[str, Any]:
        return {**super().get_template_namespace(), "moment": Moment, "megabytes": explain.megabytes,
                "counted": counted}

    def render_page(self, template: str, **values: Any) -> None:
        self.set_header("Cache-Control", "no-store")
        frame = " ".join(frame_ancestors(self)) if self.identity.kind == "lti" else ""  # the LMS frames it
        if not frame:
            self.set_header("X-Frame-Options", "DENY")
        self.set_header("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self';"
                        " frame-ancestors " + (frame or "'none'"))
        self.render(template, root=self.root, static_version=STATIC_VERSION, identity=self.identity,
                    is_moment=lambda part: isinstance(part, Moment), **values)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Basic realm="f2git"')
        message = self.error_message(status_code, **kwargs)
        if self.request.headers.get("Accept", "").startswith("application/json"):
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps({"error": message}))
            return
        self.render("error.html", root=self.root, static_version=STATIC_VERSION, status=status_code,
                    message=message, identity=getattr(self, "identity", None))

    def managed_course(self, name: str) -> CourseConfig:
        course = self.find_course(name)
        self.require_manage(course)
        return course

    def course_view(self, course: CourseConfig, now: float) -> dict[str, Any]:
        record = self.refresher.status(course.name)  # in memory: no disk, no git
        next_run: Callable[[str], float | None] = self.settings.get("f2git_next_refresh") or (lambda name: None)
        planned = next_run(course.name)
        return {"course": course, "record": record, "health": health(course, record, now),
                "source": source_label(course), "location": source_location(course),
                "last_check": Moment(record.last_check) if record.last_check else None,
                "last_change": Moment(record.last_change) if record.last_change else None,
                "next_refresh": Moment(planned) if planned else None,
                "next_release": self._next_release(record),
                "refreshing": self.refresher.is_running(course.name),
                "confirm_deletions": mass_delete_refused(record),
                "skipped": explain.skipped_count(record.skipped, record.skipped_total)}

    @staticmethod
    def _next_release(record: status.CourseStatus) -> Moment | None:
        try:
            moment = schedulable(release_time(record.next_release))  # year 9999 is "not scheduled"
        except ValueError:
            return None
        return Moment(moment.timestamp()) if moment else None


class IndexPage(DashboardHandler):
    async def get(self) -> None:
        courses = [c for c in self.config.courses.values() if self.auth.may_manage(self.identity, c)]
        if self.config.courses and not courses:
            raise Refusal(403, f"{self.identity.name} may not manage any course here.")
        now = time.time()
        await self.refresher.load_heads(c.name for c in courses)
        views = await asyncio.to_thread(lambda: [self.course_view(c, now) for c in courses])
        failing = sum(view["health"].state == "failing" for view in views)
        stale = sum(view["health"].state == "stale" for view in views)
        broken = self.config.broken if self.auth.may_manage(self.identity, None) else {}
        self.render_page("index.html", views=views, failing=failing, stale=stale, broken=broken,
                         course_requests=await self.course_requests())

    async def course_requests(self) -> int:
        """How many courses instructors asked for from their LMS wait for a manager (LTI provision = "ask")."""
        tool = self.settings.get("f2git_lti")
        if tool is None or self.identity.kind == "lti" or not self.auth.may_manage(self.identity, None):
            return 0
        return len(await asyncio.to_thread(tool.requests.all))


class CoursePage(DashboardHandler):
    root = "../"

    async def get(self, name: str) -> None:
        course = self.managed_course(name)
        await self.refresher.load_heads([course.name])
        # repo reads run git: off the event loop, which serves students' fetches
        view = await asyncio.to_thread(self.course_page_view, course)
        path = self.get_query_argument("path", "")
        if path not in view["paths"]:
            path = ""
        app = self.get_query_argument("app", "")
        apps = self.config.hub.apps
        app = app if app in apps else apps[0]
        branch = self.get_query_argument("branch", "main")
        branch = branch if branch in view["branches"] else "main"
        link = course_link(self.config, course.name, path or None, app=app, branch=branch)
        door = door_link(self.config, course.name, path or None, app=app, branch=branch)
        self.render_page("course.html", **view, path=path, app=app, link=link, door=door, branch=branch,
                         try_link=demokey.link_for(self, link),
                         apps=[(name, APPS[name][0]) for name in apps],
                         snippets=snippets(door, link_title(course.name, path)),
                         opened=self.settings["f2git_opens"].by_path(course.name), opened_by=opened_by)

    def course_page_view(self, course: CourseConfig) -> dict[str, Any]:
        repo = CourseRepo.for_course(self.config, course.name)
        view = self.course_view(course, time.time())
        files = filetree.snapshot_files(repo, view["record"].commit)
        return {**view, "tree": filetree.tree(files), "paths": filetree.paths(files),
                "history": history(view["record"], repo.log(HISTORY_SNAPSHOTS)), "members": self.members_view(course),
                "held": sorted(StateStore.for_course(self.config, course.name).held()),
                "on_hold": holds.read(self.config, course.name),
                "branches": ["main", *(f"release/{pin}" for pin in sorted(release.pins(self.config, course.name)))]}

    def members_view(self, course: CourseConfig) -> dict[str, Any] | None:
        """The roster panel of a course whose members come from the LMS (f2git/roster.py)."""
        keeper = self.settings.get("f2git_rosters")
        if keeper is None or not roster.uses_roster(course):
            return None
        view = roster.summary(course, *(keeper.store.entry(course.name) or (None, None)))
        for key in ("read_at", "error_since"):
            view[key] = Moment(view[key]) if view.get(key) else None
        return view


class RefreshAction(DashboardHandler):
    root = "../../"

    def post(self, name: str) -> None:
        course = self.managed_course(name)
        # "yes": the instructor confirmed that the source really removed most files
        confirmed = self.get_body_argument("allow_mass_delete", "") == "yes"
        if confirmed and self.refresher.is_running(course.name):
            # the sync in flight may not delete them: run one that may, right after it
            later = asyncio.ensure_future(self.refresher.refresh(course, allow_mass_delete=True))
            later.add_done_callback(lambda task: task.cancelled() or task.exception())
        else:
            self.refresher.start(course, allow_mass_delete=confirmed)  # or join the sync in flight
        if self.request.headers.get("Accept", "").startswith("application/json"):
            self.set_status(202)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps({"refreshing": True, "events": f"{course.name}/events"}))
        else:  # without JavaScript: back to the course page, which says a refresh is running
            self.redirect(f"../{course.name}", status=303)


class ProgressEvents(DashboardHandler):
    """`text/event-stream` of the course's sync in flight, ending with its result."""

    def initialize(self, board: ProgressBoard) -> None:
        self.board = board
        self.subscriber: Subscriber | None = None

    async def get(self, name: str) -> None:
        course = self.managed_course(name)
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")  # nginx: do not buffer the stream
        subscriber = self.subscriber = self.board.subscribe(course.name)
        try:
            if not self.refresher.is_running(course.name):
                await self.refresher.load_heads([course.name])
                await self.send(self._last_outcome(course.name))
                return
            if course.name in self.board.latest:
                await self.send(progress_json(self.board.latest[course.name]))
            while True:
                try:
                    await asyncio.wait_for(subscriber.wake.wait(), timeout=KEEPALIVE)
                except asyncio.TimeoutError:
                    self.write(": keepalive\n\n")
                    await self.flush()
                    continue
                subscriber.wake.clear()
                if subscriber.result is not None:
                    await self.send(await self._result_event(subscriber.result))
                    return
                if course.name in self.board.latest:
                    await self.send(progress_json(self.board.latest[course.name]))
        except tornado.iostream.StreamClosedError:
            pass  # the browser left
        finally:
            self.board.unsubscribe(course.name, subscriber)

    async def _result_event(self, result: SyncResult) -> dict[str, Any]:
        head = await asyncio.to_thread(CourseRepo.for_course(self.config, result.course).head)
        return finished_json(result, head)

    def _last_outcome(self, name: str) -> dict[str, Any]:
        record = self.refresher.status(name)
        result = self.board.results.get(name)
        if result is not None:
            return finished_json(result, record.commit)
        ok = record.last_error is None
        message = "Finished." if ok else explain.failure(record.last_error, record.commit)
        return {"phase": "finished", "ok": ok, "commit": record.commit, "error": record.last_error,
                "message": message}

    async def send(self, data: dict[str, Any]) -> None:
        self.write(f"data: {json.dumps(data)}\n\n")
        await self.flush()

    def on_connection_close(self) -> None:
        if self.subscriber is not None:
            self.subscriber.wake.set()  # let get() notice and end
        super().on_connection_close()


class PreviewAction(DashboardHandler):
    """A dry run: what the next sync would add, change and delete; nothing is committed."""

    root = "../../"

    async def post(self, name: str) -> None:
        course = self.managed_course(name)
        if self.refresher.is_running(course.name):
            await self.refresher.refresh(course)  # join it: the preview is of what comes after it
        result = await asyncio.to_thread(sync_course, self.config, course, dry_run=True)
        head = await asyncio.to_thread(CourseRepo.for_course(self.config, course.name).head)
        self.render_page("preview.html", course=course, result=result, source=source_label(course),
                         has_snapshot=head is not None, no_snapshot=explain.NO_SNAPSHOT,
                         skipped=explain.skipped_lines(result.skipped, result.skipped_total))


class LinkAction(DashboardHandler):
    """The nbgitpuller link for one file of the snapshot, with its LMS snippets (JSON, for the
    link builder's script)."""

    async def get(self, name: str) -> None:
        course = self.managed_course(name)
        path = self.get_query_argument("path", "")
        app = self.get_query_argument("app", "") or self.config.hub.apps[0]
        if app not in self.config.hub.apps:
            raise Refusal(400, f"app {app!r} is not one of this hub's apps: {', '.join(self.config.hub.apps)}")
        branch = self.get_query_argument("branch", "") or "main"
        repo = CourseRepo.for_course(self.config, course.name)
        commit = await asyncio.to_thread(repo.resolve, f"refs/heads/{branch}") if branch.startswith("release/") \
            else await asyncio.to_thread(repo.head) if branch == "main" else None
        if commit is None:
            raise Refusal(400, f"course {course.name} serves no branch {branch!r}")
        files = await asyncio.to_thread(lambda: filetree.paths(filetree.snapshot_files(repo, commit)))
        try:
            check_in_course(path, files)
            link = course_link(self.config, course.name, path or None, app=app, branch=branch)
            door = door_link(self.config, course.name, path or None, app=app, branch=branch)
        except BadLinkPath as error:
            raise Refusal(400, str(error)) from None
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"door": door, "link": link, "try": demokey.link_for(self, link), "path": path,
                                "app": app, "branch": branch,
                                **snippets(door, link_title(course.name, path))}))


def opened_by(count: int) -> str:
    """The dashboard's line under a file the front door opened this week."""
    return words.say("en", "opened_by", count=count, s="" if count == 1 else "s")


def link_title(course: str, path: str) -> str:
    """The text of the link students click in the LMS."""
    return f"{path.rsplit('/', 1)[-1]} ({course})" if path else f"Course files of {course}"


COURSE_PAGE = r"/courses/(?P<name>[^/]+)"


def routes(refresher: Refresher) -> list[tuple]:
    """The dashboard's routes; `refresher` is the server's, shared with clicks and the schedule."""
    board = ProgressBoard(refresher)
    course = COURSE_PAGE
    return [
        (r"/", IndexPage),
        (course, CoursePage),
        (course + r"/refresh", RefreshAction),
        (course + r"/events", ProgressEvents, {"board": board}),
        (course + r"/preview", PreviewAction),
        (course + r"/link", LinkAction),
        (r"/static/(.*)", tornado.web.StaticFileHandler, {"path": str(STATIC)}),
    ]
