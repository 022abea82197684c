"""One sync of one course: list what the source releases, fetch what changed, commit, publish.

Every failure leaves the last snapshot served: objects are written first, the branch
moves last by compare-and-swap, and a listing that failed never counts as deletions.
"""
from __future__ import annotations

import errno
import fnmatch
import logging
import tempfile
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Callable

from filelock import FileLock, Timeout

from connectors import Connector, Entry, Listing, Skipped, SourceError
from connectors.base import AuthError, Traffic, traffic

from . import backup, mirror, status
from .config import Config, CourseConfig
from .paths import UnsafePath, safe_path
from .store import COPY_CHUNK, CourseRepo, GitError, SyncState, git_blob_id

log = logging.getLogger("f2git.sync")

SPOOL_IN_MEMORY = 1 << 20  # bodies up to 1 MiB are spooled in memory, larger ones on disk
MASS_DELETE_MIN = 5
LOCK_TIMEOUT = 3600.0  # s a sync waits for another sync of the same course
LISTED_PATHS = 200  # paths per kind kept in a result for the history


@dataclass
class Progress:
    course: str
    phase: str  # listing | downloading | writing | finished
    done: int = 0
    total: int = 0
    path: str | None = None


@dataclass
class SyncResult:
    course: str
    ok: bool = False
    changed: bool = False
    commit: str | None = None
    added: int = 0
    modified: int = 0
    deleted: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    error: str | None = None
    auth_failed: bool = False
    next_release: datetime | None = None
    paths: dict[str, list[str]] = field(default_factory=lambda: {"added": [], "modified": [], "deleted": []})
    duration: float = 0.0
    dry_run: bool = False
    mirror_error: str | None = None  # the snapshot is fine; pushing it to `mirror` failed (retried next sync)
    source_traffic: Traffic = field(default_factory=Traffic)  # HTTP requests and bytes (for metrics)

    def to_json(self) -> dict:
        if not self.ok:
            return {"course": self.course, "ok": False, "error": self.error}
        data = {"course": self.course, "ok": True, "changed": self.changed, "commit": self.commit,
                "added": self.added, "modified": self.modified, "deleted": self.deleted,
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped]}
        if self.mirror_error:
            data["mirror_error"] = self.mirror_error
        if self.dry_run:
            data["dry_run"] = True
            data["paths"] = self.paths
        return data


class SyncRefused(Exception):
    """The sync would do something the config does not allow (a mass delete)."""


def course_lock(config: Config, name: str) -> FileLock:
    """Two syncs of one course never run at once, also across processes (CLI and server)."""
    locks = config.server.data_dir / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"{name}.lock"), timeout=LOCK_TIMEOUT)


def included(path: str, include: list[str], exclude: list[str]) -> bool:
    def matches(patterns: list[str]) -> bool:
        # "**" and "dir/**" match at any depth; fnmatch's "*" crosses "/" anyway.
        return any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path, p.replace("**/", "")) for p in patterns)
    return matches(include) and not matches(exclude)


def select(listing: Listing, course: CourseConfig) -> tuple[dict[str, Entry], list[Skipped]]:
    """The entries to write, by safe path, and the released ones that cannot be written."""
    wanted: dict[str, Entry] = {}
    skipped = list(listing.skipped)
    folded: dict[str, str] = {}
    for entry in sorted(listing.entries, key=lambda e: e.path):
        try:
            path = safe_path(entry.path)
        except UnsafePath as reason:
            skipped.append(Skipped(entry.path, f"unsafe name: {reason}"))
            continue
        if not included(path, course.include, course.exclude):
            continue
        if entry.size is not None and entry.size > course.max_file_size:
            skipped.append(Skipped(path, f"larger than max_file_size ({entry.size} > {course.max_file_size} bytes)"))
            continue
        twin = folded.get(path.casefold())
        if twin is not None:
            same = "the same name as" if twin == path else "a name differing only in letter case from"
            skipped.append(Skipped(entry.path, f"{same} {twin}"))
            continue
        folded[path.casefold()] = path
        wanted[path] = entry
    # A name cannot be a file and a folder at once (in any letter case, for Mac and
    # Windows checkouts): keep the file, skip what lies below it.
    for path in sorted(wanted):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = folded.get("/".join(parts[:depth]).casefold())
            if folder in wanted:
                skipped.append(Skipped(path, f"{folder} is a file, not a folder"))
                del wanted[path]
                break
    return wanted, skipped


class Spool:
    """A downloaded body: on disk past 1 MiB, never whole in memory; size capped while copying."""

    def __init__(self, stream: IO[bytes], limit: int):
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        self.size = 0
        self.too_large = False
        while chunk := stream.read(COPY_CHUNK):
            self.size += len(chunk)
            if self.size > limit:
                self.too_large = True
                break
            self.file.write(chunk)

    def chunks(self):
        self.file.seek(0)
        while chunk := self.file.read(COPY_CHUNK):
            yield chunk

    def blob_id(self) -> str:
        return git_blob_id(self.size, self.chunks())

    def close(self) -> None:
        self.file.close()


def commit_message(label: str, paths: dict[str, list[str]], counts: dict[str, int]) -> str:
    summary = ", ".join(f"{verb} {counts[kind]}" for kind, verb in
                        (("added", "add"), ("modified", "update"), ("deleted", "delete")) if counts[kind])
    lines = [f"{summary[0].upper()}{summary[1:]} file{'s' if sum(counts.values()) != 1 else ''} from {label}", ""]
    for kind in ("added", "modified", "deleted"):
        if paths[kind]:
            lines.append(f"{kind.capitalize()}:")
            lines += [f"  {p}" for p in paths[kind]]
            if counts[kind] > len(paths[kind]):
                lines.append(f"  … and {counts[kind] - len(paths[kind])} more")
    return "\n".join(lines).rstrip() + "\n"


def sync_course(config: Config, course: CourseConfig, *, allow_mass_delete: bool = False,
                dry_run: bool = False, progress: Callable[[Progress], None] | None = None,
                connector: Connector | None = None) -> SyncResult:
    """Sync one course. Never raises for source or git trouble: see SyncResult.ok/error."""
    started = time.time()
    result = SyncResult(course=course.name, dry_run=dry_run)
    report = progress or (lambda event: None)
    counting = traffic.set(result.source_traffic)  # threads run many syncs: reset below
    try:
        with course_lock(config, course.name):
            if not dry_run:
                backup.restore(config, course)  # a lost repo continues the history students have
            _sync(config, course, result, allow_mass_delete or course.allow_mass_delete,
                  dry_run, report, connector)
            result.ok = True
            if course.mirror and not dry_run and result.commit:
                result.mirror_error = mirror.push_course(config, course, CourseRepo.for_course(config, course.name).path)
            if not dry_run:
                backup.save(config, course.name, result.commit)
    except AuthError as error:
        result.error, result.auth_failed = str(error), True
    except (SourceError, SyncRefused) as error:
        result.error = str(error)
        # An embargo names the moment its files appear: refresh then, even after a failure.
        result.next_release = getattr(error, "next_release", None) or result.next_release
    except GitError as error:
        result.error = f"could not write the snapshot: {error}"
    except Timeout:
        result.error = "another sync of this course is still running"
    except OSError as error:
        if error.errno == errno.ENOSPC:
            result.error = "could not write the snapshot: the disk is full"
        else:
            result.error = f"could not write the snapshot: {error.strerror or error}"
    finally:
        traffic.reset(counting)
    result.duration = time.time() - started
    if result.ok:
        log.info("%s: %s", course.name, "changed, " + (result.commit or "")[:10] if result.changed else "no change")
    else:
        log.warning("%s: sync failed: %s", course.name, result.error)
    if not dry_run:
        status.record(config, result, started)
    report(Progress(course.name, "finished"))
    return result


def _sync(config: Config, course: CourseConfig, result: SyncResult, allow_mass_delete: bool,
          dry_run: bool, report: Callable[[Progress], None], connector: Connector | None) -> None:
    repo = CourseRepo.for_course(config, course.name)
    if not dry_run:
        repo.ensure()
        repo.recover()
    head = repo.head()
    state, state_holder = repo.read_state() if repo.exists() else (None, None)
    if state is not None and state.commit != head:
        state = None  # a crash between the two ref updates: re-verify content, nothing lost
    known = state.files if state else {}
    current = repo.files(head)

    report(Progress(course.name, "listing"))
    with (connector or course.connector()) as source:
        listing = source.list(state.source if state else {})
        result.next_release = listing.next_release
        if listing.unchanged and head is not None:
            result.commit = head
            return
        wanted, result.skipped = select(listing, course)

        fetch = sorted(p for p, e in wanted.items()
                       if p not in current or known.get(p, {}).get("version") != e.version
                       or known.get(p, {}).get("blob") != current[p])
        deletions = sorted(set(current) - set(wanted))
        if len(deletions) * 2 > len(current) and len(deletions) >= MASS_DELETE_MIN and not allow_mass_delete:
            raise SyncRefused(
                f"this sync would delete {len(deletions)} of {len(current)} files; nothing was changed."
                " If the source really removed them, run `f2git sync --allow-mass-delete` once"
                " or set allow_mass_delete = true for this course")
        if dry_run:
            _plan(result, fetch, deletions, current, head)
            return

        writer = repo.writer(head)
        try:
            changes, versions = _download(source, course, wanted, fetch, current, known, writer, result, report)
            deletions += [p for p in current if p in wanted and p not in versions]  # skipped while fetching
            _finish(repo, writer, course, source.label, head, state_holder, state, listing,
                    changes, versions, sorted(set(deletions)), current, result, report)
        finally:
            writer.abort()
    if result.changed:
        try:
            repo.repack()
        except GitError as error:  # the snapshot is published; packing can wait for the next one
            log.warning("%s: repack failed: %s", course.name, error)


def _plan(result: SyncResult, fetch: list[str], deletions: list[str], current: dict, head: str | None) -> None:
    result.commit = head
    result.paths = {"added": [p for p in fetch if p not in current],
                    "modified": [p for p in fetch if p in current], "deleted": deletions}
    result.added, result.modified, result.deleted = (len(result.paths[k]) for k in ("added", "modified", "deleted"))
    result.changed = bool(fetch or deletions)


def _download(source: Connector, course: CourseConfig, wanted: dict[str, Entry], fetch: list[str],
              current: dict[str, str], known: dict, writer, result: SyncResult,
              report: Callable[[Progress], None]) -> tuple[dict[str, str], dict[str, dict]]:
    """Fetch changed entries into git. Returns path -> new blob/mark, and path -> state record."""
    changes: dict[str, str] = {}
    versions = {p: {"version": e.version, "blob": current[p]} for p, e in wanted.items()
                if p not in fetch and p in current}
    for done, path in enumerate(fetch):
        report(Progress(course.name, "downloading", done, len(fetch), path))
        entry = wanted[path]
        with source.open(entry) as stream:
            spool = Spool(stream, course.max_file_size)
        try:
            if spool.too_large:
                result.skipped.append(Skipped(path, f"larger than max_file_size ({course.max_file_size} bytes)"))
                continue
            blob = spool.blob_id()
            if current.get(path) != blob:
                spool.file.seek(0)
                changes[path] = writer.blob(spool.file, spool.size)
            versions[path] = {"version": entry.version, "blob": blob}
        finally:
            spool.close()
    return changes, versions


def _finish(repo: CourseRepo, writer, course: CourseConfig, label: str, head: str | None,
            state_holder: str | None, state: SyncState | None, listing: Listing,
            changes: dict[str, str], versions: dict[str, dict], deletions: list[str],
            current: dict[str, str], result: SyncResult, report: Callable[[Progress], None]) -> None:
    paths = {"added": sorted(p for p in changes if p not in current),
             "modified": sorted(p for p in changes if p in current), "deleted": deletions}
    counts = {kind: len(items) for kind, items in paths.items()}
    result.paths = {kind: items[:LISTED_PATHS] for kind, items in paths.items()}
    result.added, result.modified, result.deleted = counts["added"], counts["modified"], counts["deleted"]
    result.changed = bool(changes or deletions) or head is None
    next_release = listing.next_release.isoformat() if listing.next_release else None
    new_state = SyncState(head, versions, listing.state, next_release)
    if not result.changed and state is not None and state.to_json() == new_state.to_json():
        result.commit = head
        return  # nothing new to record at all
    report(Progress(course.name, "writing", len(versions), len(versions)))
    commit_mark = None
    if result.changed:
        message = commit_message(label, result.paths, counts) if (changes or deletions) else \
            f"Start course {course.name} from {label} (nothing released yet)\n"
        commit_mark = writer.commit(message, changes, deletions)
    marks = writer.finish()  # every blob, and the commit when there is one
    if commit_mark:
        new_state.commit = marks[commit_mark]
    # The state names the commit it describes, whose id exists only now: a second, small run.
    state_writer = repo.writer(None)
    try:
        state_writer.scratch_refs += writer.scratch_refs
        state_mark = state_writer.state(new_state)
        state_id = state_writer.finish()[state_mark]
        state_writer.publish(new_state.commit, head, state_id, state_holder)
    finally:
        state_writer.abort()
    result.commit = new_state.commit
