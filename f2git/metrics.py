"""Prometheus metrics of one f2git server: syncs, source traffic, clicks, per-course health.

Each server has its own `Metrics` (its own registry), fed by two listeners of the server's
refresher: `sync_finished` after every sync (its result carries the source traffic the
connector's HTTP session counted) and `click_served` after every git fetch.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from . import status

if TYPE_CHECKING:
    from .config import Config
    from .opens import OpenCounts
    from .server.packcache import PackCache
    from .server.refresh import Refresher
    from .outcome import SyncResult

SYNC_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self, config: "Config | None" = None):
        self.registry = CollectorRegistry(auto_describe=True)
        self._courses: list[str] = list(config.courses) if config is not None else []
        r = self.registry
        self.syncs = Counter("f2git_syncs", "Syncs by course and outcome (changed, unchanged, failed)",
                             ["course", "outcome"], registry=r)
        self.sync_seconds = Histogram("f2git_sync_duration_seconds", "How long syncs took",
                                      ["course"], buckets=SYNC_BUCKETS, registry=r)
        self.source_requests = Counter("f2git_source_requests", "HTTP requests made to sources (retries included)",
                                       ["course"], registry=r)
        self.source_bytes = Counter("f2git_source_bytes", "Bytes received from sources (listings and files)",
                                    ["course"], registry=r)
        self.listings = Counter("f2git_source_listings", "Source listings: the whole source, or only what"
                                " changed (a local folder's change journal)", ["course", "kind"], registry=r)
        self.files = Counter("f2git_snapshot_files", "Files added, modified and deleted by snapshots",
                             ["course", "change"], registry=r)
        self.clicks = Counter("f2git_clicks", "Git fetches (student clicks) served", ["course"], registry=r)
        self.refresh_wait = Histogram("f2git_refresh_wait_seconds",
                                      "How long clicks waited for a refresh of their course",
                                      ["course"], buckets=WAIT_BUCKETS, registry=r)
        self.stale = Counter("f2git_stale_snapshots_served",
                             "Clicks served the last snapshot because the refresh was too slow (timeout)"
                             " or failed", ["course", "reason"], registry=r)
        self.last_success = Gauge("f2git_last_success_timestamp_seconds",
                                  "When the course's source was last read completely (0: never)",
                                  ["course"], registry=r)
        self.course_ok = Gauge("f2git_course_ok", "1 when the course's last sync succeeded, else 0",
                               ["course"], registry=r)
        self.has_snapshot = Gauge("f2git_course_has_snapshot", "1 when students can fetch a snapshot, else 0",
                                  ["course"], registry=r)
        self.backup_ok = Gauge("f2git_course_backup_ok", "0 when the course's last backup (or restore) to"
                               " backup_dir failed, else 1", ["course"], registry=r)
        if config is not None:  # standalone: from the status files (a server's come from `watch`)
            for name in config.courses:
                record = status.read_file(config, name)
                self.restore(record, has_snapshot=record.last_success is not None)

    def watch(self, refresher: "Refresher") -> None:
        """Follow the server's refresher; per-course gauges start from what it knows (no git)."""
        self._courses = list(refresher.config.courses)
        refresher.on_result(self.sync_finished)
        refresher.on_click_served(self.click_served)
        for name in refresher.config.courses:
            self.restore(refresher.status(name))
            self.has_snapshot.labels(name).set_function(lambda name=name: refresher.snapshot_likely(name))

    def watch_pack_cache(self, cache: "PackCache") -> None:
        """The pack cache's figures, read from it at each scrape."""
        self.registry.register(_PackCacheCollector(cache))

    def watch_opens(self, opens: "OpenCounts") -> None:
        """The front door's counts, read at each scrape: opens, and distinct students this week."""
        self.registry.register(_OpensCollector(opens, self._courses))

    def restore(self, record: "status.CourseStatus", has_snapshot: bool | None = None) -> None:
        """Per-course gauges as the status files left them (after a restart)."""
        self.last_success.labels(record.course).set(record.last_success or 0)
        self.course_ok.labels(record.course).set(0 if record.failing else 1)
        self.backup_ok.labels(record.course).set(0 if record.backup_error else 1)
        if has_snapshot is not None:
            self.has_snapshot.labels(record.course).set(1 if has_snapshot else 0)

    def sync_finished(self, result: "SyncResult") -> None:
        course = result.course
        self.sync_seconds.labels(course).observe(result.duration)
        self.source_requests.labels(course).inc(result.source_traffic.requests)
        self.source_bytes.labels(course).inc(result.source_traffic.bytes)
        if result.listing:
            self.listings.labels(course, result.listing).inc()
        if not result.ok:
            self.syncs.labels(course, "failed").inc()
            self.course_ok.labels(course).set(0)
            return
        self.syncs.labels(course, "changed" if result.changed else "unchanged").inc()
        for change in ("added", "modified", "deleted"):
            self.files.labels(course, change).inc(getattr(result, change))
        self.course_ok.labels(course).set(1)
        self.backup_ok.labels(course).set(0 if result.backup_error else 1)
        self.last_success.labels(course).set(time.time() - result.duration)  # when it started, as in status
        self.has_snapshot.labels(course).set(1 if result.commit else 0)

    def click_served(self, course: str, outcome: str, waited: float) -> None:
        """`outcome`: fresh (no refresh needed), refreshed, timeout or failed (last snapshot served)."""
        self.clicks.labels(course).inc()
        if outcome != "fresh":
            self.refresh_wait.labels(course).observe(waited)
        if outcome in ("timeout", "failed"):
            self.stale.labels(course, outcome).inc()

    def exposition(self) -> tuple[str, bytes]:
        """(content type, body) of a scrape."""
        return CONTENT_TYPE_LATEST, generate_latest(self.registry)


class _PackCacheCollector:
    """How the pack cache answered git's pack requests: a hit costs a file read, a git run
    costs upload-pack (on a click, or built ahead after a release so no click pays)."""

    def __init__(self, cache: "PackCache"):
        self.cache = cache

    def collect(self):
        stats = self.cache.stats()
        answers = CounterMetricFamily("f2git_pack_cache_answers", "Git requests the pack cache answered,"
                                      " from a stored or shared answer (hit) or by running git (miss)",
                                      labels=["result"])
        answers.add_metric(["hit"], stats["hits"])
        answers.add_metric(["miss"], stats["misses"])
        yield answers
        runs = CounterMetricFamily("f2git_pack_cache_git_runs", "git upload-pack runs whose answer the cache"
                                   " stored: for a click, or built ahead after a release", labels=["when"])
        runs.add_metric(["click"], stats["computed"])
        runs.add_metric(["ahead"], stats["prebuilt"])
        yield runs
        yield GaugeMetricFamily("f2git_pack_cache_bytes", "Bytes stored answers take on disk (whole blocks)"
                                " and in bookkeeping, bounded by pack_cache_size",
                                value=stats["bytes"])
        yield GaugeMetricFamily("f2git_pack_cache_entries", "Stored answers", value=stats["entries"])
        yield GaugeMetricFamily("f2git_pack_cache_running", "git runs the cache is waiting for", value=stats["running"])


class _OpensCollector:
    """Per course: how often the front door was opened, and by how many students this week
    (f2git.opens keeps no names, only this week's keyed digests)."""

    def __init__(self, opens: "OpenCounts", courses: list[str]):
        self.opens = opens
        self.courses = courses

    def collect(self):
        total = CounterMetricFamily("f2git_door_opens", "Opens of the front door (/open/<course>…), by course",
                                    labels=["course"])
        students = GaugeMetricFamily("f2git_door_students_this_week", "Distinct students who opened the course"
                                     " through the front door this week (UTC, from Monday)", labels=["course"])
        for course in self.courses:
            total.add_metric([course], self.opens.opens[course])
            students.add_metric([course], self.opens.students(course))
        yield total
        yield students
