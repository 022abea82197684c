"""`f2git serve`: the tornado application, the background schedule, start and clean stop."""
from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import time
import zlib
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

import tornado.httpserver
import tornado.web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from connectors.base import counted
from f2git.config import Config
from f2git.hubgroups import keep_groups
from f2git.metrics import Metrics
from f2git.opens import OpenCounts
from f2git.roster import RosterKeeper, uses_roster

from . import api, dashboard, door, git, lti, members, prometheus, pull, releasectl, releasepages
from .auth import Auth, HubAuth, TokenAuth, make_auth
from .headers import SecurityHeaders
from .connections import (LISTEN_BACKLOG, GuardedHTTPServer, connection_budget, keep_alive_hint,
                          raise_open_files_limit)
from .git import Backends
from .refresh import Refresher
from .releases import ReleaseSchedule

log = logging.getLogger("f2git.server")

# s a request body may take: a fetch request is small, and a client that stalls mid-body
# would otherwise hold its git http-backend forever.
BODY_TIMEOUT = 120.0


def make_app(config: Config, *, auth: Auth | None = None, refresher: Refresher | None = None,
             backends: Backends | None = None,
             next_refresh: Callable[[str], float | None] | None = None,
             rosters: RosterKeeper | None = None) -> tornado.web.Application:
    """The application alone; `Server` adds the schedule and the lifecycle."""
    auth = make_auth(config) if auth is None else auth
    if isinstance(auth, TokenAuth) and not config.server.manage_tokens_env:
        log.warning("every token in $%s may manage f2git (refresh, dashboard, metrics): give students fetch-only"
                    " tokens by naming the managers' variable in [server] manage_tokens_env", config.server.tokens_env)
    if not isinstance(auth, HubAuth) and any(course.members == "lms" for course in config.courses.values()):
        log.warning("members = \"lms\" needs auth = \"jupyterhub\" (hub user names): with auth = %r the LMS"
                    " roster decides nothing", config.server.auth)
    refresher = Refresher(config) if refresher is None else refresher
    metrics = Metrics(config)
    metrics.watch(refresher)
    backends = Backends(config.server.max_git_processes) if backends is None else backends
    pack_cache = git.make_pack_cache(config, backends, refresher)
    metrics.watch_pack_cache(pack_cache)
    opens = OpenCounts()
    metrics.watch_opens(opens)
    rosters = RosterKeeper(config) if rosters is None else rosters
    read_rosters_with_syncs(config, refresher, rosters)
    keep_groups(config, rosters, auth)
    tool = lti.Tool(config) if config.lti is not None else None  # creates the tool key on first start
    return tornado.web.Application(
        auth.first_rules() + with_service_prefix(git.ROUTES + api.ROUTES + releasectl.ROUTES + pull.ROUTES
                                                 + members.ROUTES + prometheus.ROUTES + door.ROUTES
                                                 + dashboard.routes(refresher) + releasepages.routes(dashboard.COURSE_PAGE)
                                                 + lti.routes(tool))
        + auth.extra_handlers(),
        transforms=[SecurityHeaders, keep_alive_hint(config.server.header_timeout)],
        **auth.app_settings(),
        f2git_config=config,
        f2git_auth=auth,
        f2git_refresher=refresher,
        f2git_metrics=metrics,
        f2git_backends=backends,
        f2git_packcache=pack_cache,
        f2git_rosters=rosters,
        f2git_opens=opens,
        f2git_next_refresh=next_refresh,
        f2git_lti=tool,
        log_function=log_request,
    )


def read_rosters_with_syncs(config: Config, refresher: Refresher, rosters: RosterKeeper) -> None:
    """Each sync of a course with an LMS roster also reads the roster, at most every roster_ttl."""
    def after_sync(result) -> None:
        course = config.courses.get(result.course)
        if course is not None and uses_roster(course):
            rosters.refresh_if_due(course)

    refresher.on_result(after_sync)


access_log = logging.getLogger("tornado.access")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access line without the query string: a client may put a token there."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    request = handler.request
    access_log.log(level, "%d %s %s (%s) %.1fms", status, request.method, request.path,
                   request.remote_ip, 1000.0 * request.request_time())


def with_service_prefix(routes: list[tuple]) -> list[tuple]:
    """As a hub service behind the hub's proxy, paths keep the prefix (/services/<name>/…): serve both."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/").rstrip("/")
    if not prefix:
        return routes
    return routes + [(re.escape(prefix) + pattern, *rest) for pattern, *rest in routes]


class Schedule:
    """Background refreshes: every course's `schedule`, and once more at its next release.

    Scheduled checks are spread: each course's first check after a start is delayed by its own
    fixed share (from its name) of up to half its interval (at most SPREAD), so 200 courses do not
    all list their sources in the same second. They run behind clicks and "Refresh now" (not
    urgent), and the heads load in the background.
    """

    JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 24 * 3600}
    SPREAD = 300.0  # s: the widest spread of scheduled checks
    FIRST_SPREAD = 10.0  # s: the widest delay of a never-checked course's first sync

    def __init__(self, config: Config, refresher: Refresher):
        self.config = config
        self.refresher = refresher
        self.scheduler = AsyncIOScheduler(timezone=timezone.utc, job_defaults=self.JOB_DEFAULTS)
        self.releases = ReleaseSchedule(self.scheduler, self._refresh)
        self._warming: asyncio.Task | None = None
        refresher.on_result(self.releases.after_sync)
        refresher.on_course_added(self.add_course)

    @staticmethod
    def share(name: str) -> float:
        """The course's fixed place in [0, 1): the same on every start, spread over names."""
        return zlib.crc32(name.encode()) / 2**32

    def first_run(self, name: str, interval: float, now: datetime) -> datetime:
        """A course checked recently waits out its interval, a stale one refreshes soon; both
        shifted by the course's share of the spread."""
        checked = self.refresher.last_check(name)
        spread = min(interval / 2, self.FIRST_SPREAD if not checked else self.SPREAD)
        due = max(now, datetime.fromtimestamp(checked, timezone.utc) + timedelta(seconds=interval))
        return due + timedelta(seconds=self.share(name) * spread)

    def start(self) -> None:
        """Call inside the running event loop."""
        now = datetime.now(timezone.utc)
        for name in self.config.courses:
            self.plan_checks(name, now)
        self.scheduler.start()
        self.releases.restore(self.refresher.status(name) for name in self.config.courses)
        self._warming = asyncio.get_running_loop().create_task(self.refresher.load_heads())

    def plan_checks(self, name: str, now: datetime) -> None:
        course = self.config.courses[name]
        if course.schedule > 0:
            self.scheduler.add_job(self._refresh, IntervalTrigger(seconds=course.schedule, timezone=timezone.utc),
                                   args=[name], id=f"schedule:{name}", name=f"refresh {name}",
                                   next_run_time=self.first_run(name, course.schedule, now), replace_existing=True)

    def add_course(self, name: str) -> None:
        """A course created while serving (an LTI launch's) is checked on its schedule and at its
        releases from now on, as if it had been there at the start."""
        self.plan_checks(name, datetime.now(timezone.utc))
        self.releases.restore([self.refresher.status(name)])

    def next_run(self, name: str) -> float | None:
        """Epoch seconds of the course's next background refresh, if any."""
        times = [job.next_run_time for job in self.scheduler.get_jobs()
                 if job.args == (name,) and job.next_run_time is not None]
        return min(times).timestamp() if times else None

    async def _refresh(self, name: str) -> None:
        try:
            await self.refresher.refresh(self.config.courses[name], urgent=False)
        except asyncio.CancelledError:
            pass  # the scheduler is shutting down; the sync itself is shielded and finishes

    def shutdown(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)


class Server:
    """The app bound to its sockets, plus the schedule; `start()` and `stop()` in the loop."""

    def __init__(self, config: Config, *, auth: Auth | None = None, clock: Callable[[], float] = time.time,
                 body_timeout: float = BODY_TIMEOUT):
        """`clock` tells the time for TTL decisions (tests turn it forward)."""
        self.config = config
        self.body_timeout = body_timeout
        self.refresher = Refresher(config, clock=clock)
        self.backends = Backends(config.server.max_git_processes)
        self.schedule = Schedule(config, self.refresher)
        self.rosters = RosterKeeper(config, clock=clock)
        self.app = make_app(config, auth=auth, refresher=self.refresher, backends=self.backends,
                            next_refresh=self.schedule.next_run, rosters=self.rosters)
        self.http: tornado.httpserver.HTTPServer | None = None

    async def start(self, sockets: Iterable[socket.socket] | None = None) -> None:
        server = self.config.server
        self.http = GuardedHTTPServer(
            self.app, body_timeout=self.body_timeout, idle_connection_timeout=server.header_timeout,
            max_connections=connection_budget(server.max_connections, self.backends.limit),
            max_connections_per_address=server.max_connections_per_address,
            max_connections_per_identity=server.max_connections_per_identity,
            max_request_bodies=server.max_request_bodies)
        if sockets is None:
            self.http.listen(server.port, server.host, backlog=LISTEN_BACKLOG)
        else:
            self.http.add_sockets(sockets)
        self.schedule.start()
        for course in self.config.courses.values():  # a roster never read (or stale) is read at start
            self.rosters.refresh_if_due(course)

    async def stop(self) -> None:
        """Stop listening, end running fetches, let running syncs finish, stop the workers."""
        if self.http is not None:
            self.http.stop()
        self.schedule.shutdown()
        await self.backends.close()
        if self.http is not None:
            await self.http.close_all_connections()
        await self.rosters.close()
        await self.refresher.close()


def serve(config: Config) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(config))


async def _serve(config: Config) -> None:
    raise_open_files_limit()
    server = Server(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await server.start()
    log.info("serving %s at http://%s:%d (students use %s/git/<course>)",
             counted(len(config.courses), "course"), config.server.host, config.server.port, config.server.public_url)
    await stopping.wait()
    log.info("stopping")
    await server.stop()
