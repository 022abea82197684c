"""What each course's syncs did: last check, last change, last error, recent history.

One JSON file per course in <data_dir>/status/, replaced atomically and written under the
course's sync lock. The repo stays the truth for the commit; this file is the story.
`read_file` reads the file alone (no git); `read` adds the commit from the repo (runs git).
"""
from __future__ import annotations

import copy
import errno
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Config
    from .outcome import SyncResult

HISTORY = 50  # sync outcomes kept per course


@dataclass
class CourseStatus:
    course: str
    commit: str | None = None
    last_check: float | None = None  # last time the source was read completely
    last_attempt: float | None = None
    last_success: float | None = None
    last_change: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    auth_failed: bool = False
    next_release: str | None = None
    mirror_error: str | None = None  # why the last push to the course's mirror failed
    backup_error: str | None = None  # why the last backup (or a restore) of the course failed
    skipped: list[dict] = field(default_factory=list)
    withheld: dict[str, int] = field(default_factory=dict)  # reason → count of items f2git could not decide
    skipped_total: int = 0  # skipped files, also those the list leaves out
    mass_delete_refused: int | None = None  # the last sync stopped: it would have deleted this many files
    history: list[dict] = field(default_factory=list)  # newest first

    @property
    def failing(self) -> bool:
        return self.last_error is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _folder(config: "Config"):
    return config.server.data_dir / "status"


def _path(config: "Config", name: str):
    return _folder(config) / f"{name}.json"


def read_file(config: "Config", name: str) -> CourseStatus:
    """The course's status file as it is; `commit` is None (the repo knows it, see `read`)."""
    try:
        data = json.loads(_path(config, name).read_text())
        fields = CourseStatus.__dataclass_fields__
        record = CourseStatus(**{k: v for k, v in data.items() if k in fields})
    except (OSError, ValueError, TypeError):
        record = CourseStatus(course=name)
    record.course = name
    record.commit = None
    return record


def stamp(config: "Config", name: str) -> tuple | None:
    """What changes whenever the course's status file is rewritten (each write is a new file)."""
    try:
        found = _path(config, name).stat()
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns, found.st_size


def read(config: "Config", name: str) -> CourseStatus:
    """The status file plus the repo's commit (one `git rev-parse`: not on an event loop)."""
    from .store import CourseRepo

    record = read_file(config, name)
    record.commit = CourseRepo.for_course(config, name).head()
    return record


def _write(config: "Config", record: CourseStatus) -> None:
    target = _path(config, record.course)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(prefix=f".{record.course}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record.to_json(), handle, indent=1)
        os.replace(scratch, target)
    except BaseException:
        os.unlink(scratch)
        raise


def applied(current: CourseStatus, result: "SyncResult", started: float) -> CourseStatus:
    """`current` with one sync outcome added (a new record); a failure keeps the last success
    and change times."""
    current = copy.deepcopy(current)
    current.last_attempt = started
    event: dict[str, Any] = {"time": started, "ok": result.ok, "duration": round(result.duration, 3)}
    if result.ok:
        current.last_check = current.last_success = started
        current.last_error = current.last_error_at = None
        current.auth_failed = False
        current.mirror_error = result.mirror_error
        current.backup_error = result.backup_error
        current.skipped = [{"path": s.path, "reason": s.reason} for s in result.skipped]
        current.withheld = dict(result.withheld)
        current.skipped_total = result.skipped_total
        current.mass_delete_refused = None
        current.next_release = result.next_release.isoformat() if result.next_release else None
        if result.changed:
            current.last_change = started
        if result.commit:
            current.commit = result.commit
        event.update(changed=result.changed, commit=result.commit, added=result.added,
                     modified=result.modified, deleted=result.deleted, paths=result.paths)
    else:
        current.last_error, current.last_error_at = result.error, started
        current.auth_failed = result.auth_failed
        current.mass_delete_refused = result.mass_delete_refused
        if result.next_release:
            current.next_release = result.next_release.isoformat()
        event["error"] = result.error
    current.history = [event, *current.history][:HISTORY]
    return current


def record_event(config: "Config", name: str, event: dict[str, Any], mapping: dict[str, str] | None = None) -> None:
    """Add a release-control event (retract, rollback) to the course's history; with `mapping`
    (old -> new commit ids) the ids of earlier events follow a rewrite. Under the course lock."""
    current = read_file(config, name)
    for earlier in current.history:
        if mapping and earlier.get("commit") in mapping:
            earlier["commit"] = mapping[earlier["commit"]]
    current.history = [event, *current.history][:HISTORY]
    current.last_change = event["time"]
    _write(config, current)


def describe_os_error(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "the disk is full"
    if error.errno == errno.EROFS:
        return "the disk is read-only"
    return error.strerror or str(error)


def record(config: "Config", result: "SyncResult", started: float) -> str | None:
    """Add one sync outcome to the course's file. Returns None, or why it could not be written:
    a full disk must not turn a finished sync into a crash; the caller shows the outcome."""
    try:
        _write(config, applied(read_file(config, result.course), result, started))
    except OSError as error:
        return f"could not record the status in {_folder(config)}: {describe_os_error(error)}"
    return None


def unwritable(config: "Config") -> str | None:
    """None when a status file can be written now, else why not (a full or read-only disk)."""
    return folder_unwritable(_folder(config))


def backup_unwritable(config: "Config") -> str | None:
    """None when `[server] backup_dir` is unset or can be written now, else why not."""
    backup_dir = config.server.backup_dir
    return None if backup_dir is None else folder_unwritable(backup_dir)


def folder_unwritable(folder: "os.PathLike[str]") -> str | None:
    """None when a file can be written in `folder` (or where it would be made), else why not.
    Writes and removes one small probe file: access() does not see a full disk, nor root's limits."""
    folder = Path(folder)
    where = folder
    while not where.exists() and where != where.parent:  # not made yet: where it would be made
        where = where.parent
    try:
        with tempfile.NamedTemporaryFile(prefix=".probe.", dir=where) as probe:
            probe.write(b"x" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        return f"cannot write to {folder}: {describe_os_error(error)}"
    return None
