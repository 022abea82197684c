"""One sync of one course: list what the source releases, fetch what changed, commit, publish.

Every failure leaves the last snapshot served: objects are written first, the branch
moves last by compare-and-swap, and a listing that failed never counts as deletions.
A sync costs what changed: the state (f2git/syncstate.py) knows each file's version and
blob in the served commit, so only new versions are read and only changed rows written.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import shlex
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable

from filelock import FileLock, Timeout

from connectors import Connector, Entry, EntryGone, Listing, Skipped, SourceError
from connectors._time import schedulable
from connectors.base import AuthError, ReadLimits, WatchedStream, counted, read_limits, traffic

from . import backup, holds, mirror, status
from .config import Config, CourseConfig
from .outcome import LISTED_PATHS, Progress, SyncResult
from .selection import Selection, too_large
from .store import COPY_CHUNK, LEGACY_STATE_REF, CourseRepo, GitError, SnapshotWriter, git_blob_id
from .syncstate import Row, StateStore, SyncState

log = logging.getLogger("f2git.sync")

SPOOL_IN_MEMORY = 1 << 20  # bodies up to 1 MiB are spooled in memory, larger ones on disk
MASS_DELETE_MIN = 5
LOCK_TIMEOUT = 3600.0  # s a sync waits for another sync of the same course
MAX_MEMORIES = 64  # courses whose last run a process keeps (see _Memory)


class SyncRefused(Exception):
    """The sync would delete more than the config allows (a mass delete); nothing was changed."""

    def __init__(self, deletions: int, files: int, course: str = "", config_path: object = ""):
        where = f" in [courses.{course}] of {config_path}" if course and config_path else " for this course"
        command = (f"f2git --config {shlex.quote(str(config_path))} sync {course}" if course and config_path
                   else "f2git sync")
        super().__init__(
            f"this sync would delete {deletions} of {counted(files, 'file')}; nothing was changed."
            f" If the source really removed them, run `{command} --allow-mass-delete` once"
            f" or set allow_mass_delete = true{where}")
        self.deletions = deletions


def course_lock(config: Config, name: str) -> FileLock:
    """Two syncs of one course never run at once, also across processes (CLI and server)."""
    locks = config.server.data_dir / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"{name}.lock"), timeout=LOCK_TIMEOUT)


class Spool:
    """A downloaded body in a temporary file beside the repo (never whole in memory), its size
    capped while copying, its blob id computed as it arrives when the source named its size."""

    def __init__(self, stream: IO[bytes], limit: int, size: int | None = None, folder: Path | None = None):
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=folder, prefix="f2git-spool-")
        self.size = 0
        self.too_large = False
        digest = hashlib.sha1(b"blob %d\0" % size) if size is not None else None
        while chunk := stream.read(COPY_CHUNK):
            self.size += len(chunk)
            if self.size > limit:
                self.too_large = True
                break
            self.file.write(chunk)
            if digest is not None:
                digest.update(chunk)
        if self.too_large:
            self.blob = ""
        elif digest is not None and self.size == size:
            self.blob = digest.hexdigest()
        else:  # the size was unknown or wrong: one more pass over the spooled body
            self.file.seek(0)
            self.blob = git_blob_id(self.size, iter(lambda: self.file.read(COPY_CHUNK), b""))
        self.file.seek(0)

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *exc_info) -> None:
        self.file.close()


def commit_message(label: str, paths: dict[str, list[str]], counts: dict[str, int]) -> str:
    summary = ", ".join(f"{verb} {counts[kind]}" for kind, verb in
                        (("added", "add"), ("modified", "update"), ("deleted", "delete")) if counts[kind])
    lines = [f"{summary[0].upper()}{summary[1:]} {'file' if sum(counts.values()) == 1 else 'files'} from {label}", ""]
    for kind in ("added", "modified", "deleted"):
        if paths[kind]:
            lines.append(f"{kind.capitalize()}:")
            lines += [f"  {p}" for p in paths[kind]]
            if counts[kind] > len(paths[kind]):
                lines.append(f"  … and {counts[kind] - len(paths[kind])} more")
    return "\n".join(lines).rstrip() + "\n"


def sync_course(config: Config, course: CourseConfig, *, allow_mass_delete: bool = False,
                dry_run: bool = False, progress: Callable[[Progress], None] | None = None,
                connector: Connector | None = None, remember: bool = True) -> SyncResult:
    """Sync one course. Never raises for source or git trouble: see SyncResult.ok/error.
    `remember`: keep what the next sync of this course in this process can start from (see
    _Memory); a process that syncs once and exits (`f2git sync`) saves that work."""
    started = time.time()
    result = SyncResult(course=course.name, dry_run=dry_run)
    report = progress or (lambda event: None)
    counting = traffic.set(result.source_traffic)  # threads run many syncs: reset below
    limited = read_limits.set(ReadLimits(course.sync_timeout, course.min_read_speed, course.max_answer_size))
    try:
        with course_lock(config, course.name):
            restored = None if dry_run else backup.restore(config, course)  # a lost repo continues students' history
            if not dry_run:
                result.on_hold = holds.read(config, course.name)
            if result.on_hold is not None:  # rolled back: nothing publishes over it until resumed
                result.ok, result.commit = True, CourseRepo.for_course(config, course.name).head()
                return _finish(config, result, started, report, dry_run)
            run = SyncRun(config, course, result, report, dry_run=dry_run,
                          allow_mass_delete=allow_mass_delete or course.allow_mass_delete, remember=remember)
            run.run(connector or course.connector())
            result.ok = True
            if not dry_run:
                run.after_publish()
            if restored is not None and restored.refused:  # shown with the course's health, like a failed backup
                result.backup_error = "; ".join(filter(None, [restored.refused, result.backup_error]))
    except AuthError as error:
        result.error, result.auth_failed = str(error), True
    except SyncRefused as error:
        result.error, result.mass_delete_refused = str(error), error.deletions
    except SourceError as error:
        result.error = str(error)
        # An embargo names the moment its files appear: refresh then, even after a failure.
        result.next_release = schedulable(error.next_release) or result.next_release
    except GitError as error:
        result.error = f"could not write the snapshot: {error}"
    except Timeout:
        result.error = "another sync of this course is still running"
    except OSError as error:
        if error.errno == errno.ENOSPC:
            result.error = "could not write the snapshot: the disk is full"
        else:
            result.error = f"could not write the snapshot: {error.strerror or error}"
    except (RecursionError, OverflowError) as error:
        # The last line of defence against hostile values (the readers catch what they know):
        # a per-course error, never a traceback that stops `f2git sync` or the server.
        result.error = f"the source sent a value f2git cannot read ({_hostile(error)}); the last snapshot stays served"
    finally:
        traffic.reset(counting)
        read_limits.reset(limited)
    return _finish(config, result, started, report, dry_run)


def _finish(config: Config, result: SyncResult, started: float, report: Callable[[Progress], None],
            dry_run: bool) -> SyncResult:
    result.duration = time.time() - started
    if result.ok and dry_run:  # a preview changes nothing, so it never says "changed"
        log.info("%s: preview: %s", result.course, "the next sync would change files" if result.changed else "no change")
    elif result.ok:
        log.info("%s: %s", result.course, "changed, " + (result.commit or "")[:10] if result.changed else
                 "on hold" if result.on_hold is not None else "no change")
    else:
        log.warning("%s: sync failed: %s", result.course, result.error)
    if not dry_run:
        result.status_error = status.record(config, result, started)
    report(Progress(result.course, "finished"))
    return result


def _hostile(error: BaseException) -> str:
    if isinstance(error, RecursionError):
        return "data nested too deeply"
    return "a number or date out of range"


@dataclass
class _Memory:
    """What the last run of a course left in this process, when its source can list only what
    changed since (Listing.follow_up): its selection, and the state rows and blobs of the commit
    they describe. The next run then touches only what changed instead of the whole tree: no
    state read, no full selection, no full plan. Trusted only while main and the state file
    are exactly as that run left them; any failed run forgets it."""

    commit: str
    stamp: tuple | None  # the state file's StateStore.stamp() after that run
    rules: tuple  # the selection's include, exclude and size limit
    state: SyncState
    current: dict[str, str]  # path -> blob in `commit`
    selection: Selection


_memories: OrderedDict[tuple[str, str], _Memory] = OrderedDict()
_memories_lock = threading.Lock()


def _memory_key(config: Config, course: CourseConfig) -> tuple[str, str]:
    return str(config.server.data_dir), course.name


def _recall(config: Config, course: CourseConfig) -> _Memory | None:
    with _memories_lock:
        return _memories.pop(_memory_key(config, course), None)  # back only if the run succeeds


def _keep(config: Config, course: CourseConfig, memory: _Memory) -> None:
    with _memories_lock:
        _memories[_memory_key(config, course)] = memory
        while len(_memories) > MAX_MEMORIES:
            _memories.popitem(last=False)


class SyncRun:
    """One sync of one course, step by step: open, list, select, plan, download, commit,
    record, publish; then after_publish (repack, mirror push, …) whenever the run succeeded.

    sync_course() makes one per sync, under the course lock, and turns what a step raises
    into the result's error. Until publish() moves `main`, a failure leaves the last snapshot
    served; the state is recorded just before, naming the new commit, so a crash between the
    two leaves a state out of step with `main`, which the next run re-verifies.
    """

    def __init__(self, config: Config, course: CourseConfig, result: SyncResult,
                 report: Callable[[Progress], None], *, dry_run: bool, allow_mass_delete: bool,
                 remember: bool = True):
        self.config, self.course, self.result, self.report = config, course, result, report
        self.dry_run, self.allow_mass_delete = dry_run, allow_mass_delete
        self.remembering = remember and not dry_run
        self.repo = CourseRepo.for_course(config, course.name)
        self.store = StateStore.for_course(config, course.name)
        self.head: str | None = None  # main when the run began
        self.state: SyncState | None = None  # what the last sync recorded
        self.in_step = False  # the state describes `head`
        self.current: dict[str, str] = {}  # path -> blob in `head`
        self.known: dict[str, Row] = {}  # state rows still true of `head`
        self.label = ""  # the source's name for commit messages ("Canvas")
        self.listing = Listing()
        self.wanted: dict[str, Entry] = {}  # released, safe and selected, by path
        self.skipped: list[Skipped] = []
        self.fetch: list[str] = []  # paths to download
        self.deletions: list[str] = []
        self.observed: dict[str, Row] = {}  # what this run downloaded: path -> (version, blob)
        self.changes: dict[str, str] = {}  # path -> new blob (mark) for the commit
        self.writer: SnapshotWriter | None = None  # started with the first object to write
        self.memory: _Memory | None = None  # the last run's, when still true (see _Memory)
        self.selection: Selection | None = None
        self.following = False  # keep this run's selection for the next run
        self.candidates: set[str] | None = None  # the only paths that may have changed; None: all
        self.dropped = False  # a file turned out too large once read, or went before it was read
        self.unread: set[str] = set()  # listed but gone when opened (EntryGone): as they were in `head`
        self.recorded: tuple[dict[str, Row], list[str] | set[str]] = ({}, [])  # rows written, removed
        self.commit_id: str | None = None
        self.unheld: list[str] = []  # retracted files whose new version this run publishes

    def run(self, connector: Connector) -> None:
        try:
            with connector as source:
                self.open()
                if not self.list(source):
                    return
                self.select()
                self.plan()
                if self.dry_run:
                    return self.preview()
                self.download(source)
            self.commit()
            self.record()
            self.publish()
            self.remember()
        finally:
            if self.writer is not None:
                self.writer.abort()
            self.result.skipped = self.skipped[:LISTED_PATHS]
            self.result.skipped_total = len(self.skipped)

    def open(self) -> None:
        """The repo as the last run left it, and what that run knew of it."""
        if not self.dry_run:
            self.repo.ensure()
            self.repo.recover()
            memory = _recall(self.config, self.course) if self.remembering else None
            self.head = self.repo.head()
            if (memory is not None and memory.commit == self.head and memory.stamp == self.store.stamp()
                    and memory.rules == Selection.rules_key(self.course)):
                self.memory, self.state, self.in_step = memory, memory.state, True
                self.known, self.current = memory.state.files, memory.current
                return
        self.state = self.store.read()
        self.head = self.repo.head()
        if self.dry_run and self.state is None:  # a preview changes nothing, not even the layout
            holder = self.repo.resolve(LEGACY_STATE_REF) if self.repo.exists() else None
            self.state = self.legacy_state(holder) if holder else None
        elif not self.dry_run and self.migrate():
            self.state = self.store.read()
        self.in_step = self.head is not None and self.state is not None and self.state.commit == self.head
        if self.in_step:
            self.known = self.state.files
            self.current = {path: row.blob for path, row in self.known.items()}
        else:
            # No state, or a crash between record and publish: main's tree is the truth, and a
            # row still counts where main holds the very blob it names.
            self.current = self.repo.files(self.head)
            rows = self.state.files if self.state else {}
            self.known = {path: row for path, row in rows.items() if self.current.get(path) == row.blob}

    def migrate(self) -> bool:
        """f2git 0.1 kept the state in the served repo (refs/f2git/state), where protocol v2
        serves any object named by id: move it to the state store, then purge it from the repo.
        Resumable: the store names the old commit until the purge is done."""
        state = self.state
        if state is not None and not state.legacy and state.commit == self.head:
            return False  # the usual case: in step, nothing left of the old layout
        imported = state is not None and state.legacy
        holder = state.legacy if imported else self.repo.resolve(LEGACY_STATE_REF)
        if holder is None:
            return False
        if not imported:
            old = self.legacy_state(holder)
            self.store.record(old.commit, old.files, [], old.source, old.next_release, replace=True, legacy=holder)
        self.repo.purge_legacy_state()
        self.store.forget_legacy()
        log.info("%s: moved the sync state out of the served repo", self.course.name)
        return True

    def legacy_state(self, holder: str) -> SyncState:
        old = self.repo.legacy_state(holder) or {}
        files = {path: Row(str(row["version"]), str(row["blob"])) for path, row in old.get("files", {}).items()
                 if isinstance(row, dict) and "version" in row and "blob" in row}
        source = old.get("source") if isinstance(old.get("source"), dict) else {}
        return SyncState(old.get("commit"), files, source, old.get("next_release"))

    def list(self, source: Connector) -> bool:
        """Everything the source releases; False when it proved nothing changed."""
        self.report(Progress(self.course.name, "listing"))
        self.label = source.label
        changes = source.list_changes(self.state.source) if self.memory is not None else None
        self.listing = changes if changes is not None else source.list(self.state.source if self.in_step else {})
        self.listing.next_release = schedulable(self.listing.next_release)  # year 9999 is "never"
        self.result.listing = "changes" if changes is not None else "whole"
        self.result.next_release = self.listing.next_release
        self.result.withheld = dict(self.listing.withheld)
        if self.listing.unchanged and self.head is not None:
            self.result.commit = self.head
            return False
        return True

    def select(self) -> None:
        if self.listing.touched is not None:  # list_changes answered: only with a memory
            self.selection = self.memory.selection
            self.candidates = self.selection.apply(self.listing)
            self.following = True
        else:
            self.selection = Selection(self.course)
            self.selection.decide(self.listing.entries, self.listing.skipped)
            self.following = self.listing.follow_up and self.remembering and self.selection.follow(self.listing)
        self.wanted, self.skipped = self.selection.wanted, self.selection.skipped

    def plan(self) -> None:
        """What to download (new or changed version) and delete; refuse a mass delete."""
        looked_at = self.wanted.keys() if self.candidates is None else self.candidates & self.wanted.keys()
        # Retracted files (release.py) stay out while the source offers the version retracted.
        held = {path: version for path, version in self.store.held().items() if path in self.wanted}
        self.unheld = [path for path, version in held.items() if version and self.wanted[path].version != version]
        self.result.held = sorted(held.keys() - set(self.unheld))
        self.fetch = sorted(path for path in looked_at if path not in held or path in self.unheld
                            if (row := self.known.get(path)) is None or row.version != self.wanted[path].version)
        gone = self.current.keys() - self.wanted.keys() if self.candidates is None else \
            (path for path in self.candidates if path in self.current and path not in self.wanted)
        self.deletions = sorted(gone)
        files = len(self.current)
        if len(self.deletions) * 2 > files and len(self.deletions) >= MASS_DELETE_MIN and not self.allow_mass_delete:
            raise SyncRefused(len(self.deletions), files, self.course.name, self.config.path)

    def preview(self) -> None:
        """A dry run's answer: what a sync would add, modify and delete."""
        self._count({"added": [p for p in self.fetch if p not in self.current],
                     "modified": [p for p in self.fetch if p in self.current], "deleted": self.deletions})
        self.result.changed = bool(self.fetch or self.deletions)
        self.result.commit = self.head

    def download(self, source: Connector) -> None:
        """Fetch what changed; a body whose blob main already holds is not written again."""
        for done, path in enumerate(self.fetch):
            self.report(Progress(self.course.name, "downloading", done, len(self.fetch), path))
            entry = self.wanted[path]
            try:
                opened = source.open(entry)
            except EntryGone as gone:  # written while it syncs: this file waits for the next sync
                then = "students keep its last version until the next sync" if path in self.current \
                    else "the next sync looks again"
                self.skipped.append(Skipped(path, f"{gone}: {then}"))
                self.unread.add(path)
                continue
            with opened, WatchedStream(opened, f"{source.label}: {path}") as stream:
                spool = Spool(stream, self.course.max_file_size, entry.size, self.repo.path)
            with spool:
                if spool.too_large:
                    self.skipped.append(Skipped(path, too_large(None, self.course.max_file_size)))
                    continue
                self.observed[path] = Row(entry.version, spool.blob)
                if self.current.get(path) != spool.blob:
                    self.changes[path] = self._writer().blob(spool.file, spool.size)
        # Released but too large once read: out of the snapshot like any other skipped file.
        dropped = [path for path in self.fetch if path in self.current and path not in self.observed
                   and path not in self.unread]
        self.deletions = sorted({*self.deletions, *dropped})
        self.dropped = any(path not in self.observed for path in self.fetch)  # the selection is not the tree

    def _writer(self) -> SnapshotWriter:
        if self.writer is None:
            self.writer = self.repo.writer(self.head or self.repo.empty_root())
        return self.writer

    def commit(self) -> None:
        """The new commit's objects, when anything changed (or the course has no snapshot yet)."""
        self._count({"added": sorted(p for p in self.changes if p not in self.current),
                     "modified": sorted(p for p in self.changes if p in self.current), "deleted": self.deletions})
        self.result.changed = bool(self.changes or self.deletions) or self.head is None
        if not self.result.changed:
            self.commit_id = self.head
            return
        self.report(Progress(self.course.name, "writing", len(self.fetch), len(self.fetch)))
        counts = {"added": self.result.added, "modified": self.result.modified, "deleted": self.result.deleted}
        message = commit_message(self.label, self.result.paths, counts) if (self.changes or self.deletions) \
            else f"Start course {self.course.name} from {self.label} (nothing released yet)\n"
        writer = self._writer()
        mark = writer.commit(message, self.changes, self.deletions)
        self.commit_id = writer.finish()[mark]

    def record(self) -> None:
        """Make the state describe the new commit, writing only the rows that changed."""
        old = self.state.files if self.state else {}
        changed = {path: row for path, row in self.observed.items() if old.get(path) != row}
        if self.in_step:  # old's paths are current's, and no deleted path is changed
            removed = [path for path in self.deletions if path in old]
        else:
            removed = old.keys() - ((self.current.keys() - set(self.deletions)) | self.changes.keys())
        self.recorded = changed, removed
        next_release = self.listing.next_release.isoformat() if self.listing.next_release else None
        if (self.state is not None and self.state.commit == self.commit_id and not changed and not removed
                and self.state.source == self.listing.state and self.state.next_release == next_release):
            return  # nothing new to record at all
        self.store.record(self.commit_id, changed, removed, self.listing.state, next_release,
                          replace=self.state is None)

    def publish(self) -> None:
        """Move main to the new commit, only if it is still where this run found it."""
        if self.commit_id != self.head:
            self.writer.publish(self.commit_id, self.head)
        self.result.commit = self.commit_id
        if self.unheld:  # the source has a new version of a retracted file: it is released again
            self.store.unhold(self.unheld)

    def remember(self) -> None:
        """Keep this run's selection and state for the next run of the course (see _Memory)."""
        if not self.following or self.dropped or self.commit_id is None:
            return
        changed, removed = self.recorded
        files = self.state.files if self.state else {}
        current = self.current
        for path in removed:
            files.pop(path, None)
        files.update(changed)
        for path in self.deletions:
            current.pop(path, None)
        current.update((path, self.observed[path].blob) for path in self.changes)
        next_release = self.listing.next_release.isoformat() if self.listing.next_release else None
        state = SyncState(self.commit_id, files, self.listing.state, next_release)
        _keep(self.config, self.course, _Memory(self.commit_id, self.store.stamp(), Selection.rules_key(self.course),
                                                state, current, self.selection))

    def after_publish(self) -> None:
        """Steps after a successful run that never undo it: their failures are reported, not raised."""
        if self.result.changed:
            try:
                self.repo.repack()
            except GitError as error:  # the snapshot is published; packing can wait for the next one
                log.warning("%s: repack failed: %s", self.course.name, error)
        if self.course.mirror and self.result.commit:
            self.result.mirror_error = mirror.push_course(self.config, self.course, self.repo.path)
        self.result.backup_error = backup.save(self.config, self.course.name, self.result.commit)

    def _count(self, paths: dict[str, list[str]]) -> None:
        self.result.paths = {kind: items[:LISTED_PATHS] for kind, items in paths.items()}
        self.result.added, self.result.modified, self.result.deleted = (
            len(paths[kind]) for kind in ("added", "modified", "deleted"))
