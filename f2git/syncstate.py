"""What the last sync of a course knew, kept outside the served repo: one SQLite database per
course in <data_dir>/state/<course>.sqlite, so no git request can ever reach it.

It holds one row per file of the commit it describes (path, the source's version token, the
blob), the connector's listing state and the next release. A sync writes only the rows it
changed, in one transaction, after `main` has moved: a state whose commit is not main's is
out of step (a crash between the two) and is re-verified, never trusted.
"""
from __future__ import annotations

import contextlib
import errno
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, NamedTuple

if TYPE_CHECKING:
    from .config import Config

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, version TEXT NOT NULL, blob TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS held (path TEXT PRIMARY KEY, version TEXT NOT NULL) WITHOUT ROWID;
"""


class Row(NamedTuple):
    version: str  # the source's version token when the file was read
    blob: str  # the git blob id of what was read


@dataclass
class SyncState:
    commit: str | None  # the commit these rows describe
    files: dict[str, Row] = field(default_factory=dict)
    source: dict = field(default_factory=dict)  # the connector's Listing.state
    next_release: str | None = None
    legacy: str | None = None  # the old in-repo state commit still to purge (see store.migrate)


class StateStore:
    """The state database of one course. Only syncs write it, under the course lock."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def for_course(cls, config: "Config", name: str) -> "StateStore":
        return cls(config.server.data_dir / "state" / f"{name}.sqlite")

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        return db

    def stamp(self) -> tuple | None:
        """Changes whenever the database file is written (by this process or another)."""
        try:
            info = self.path.stat()
        except OSError:
            return None
        return info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns

    def read(self) -> SyncState | None:
        """The stored state; None when there is none or it cannot be read (then all is re-verified)."""
        if not self.path.exists():
            return None
        try:
            db = self._connect()
            try:
                meta = dict(db.execute("SELECT key, value FROM meta"))
                if "commit" not in meta:
                    return None
                files = {path: Row(version, blob) for path, version, blob in
                         db.execute("SELECT path, version, blob FROM files")}
            finally:
                db.close()
            return SyncState(commit=meta["commit"] or None, files=files,
                             source=json.loads(meta.get("source") or "{}"),
                             next_release=meta.get("next_release") or None,
                             legacy=meta.get("legacy") or None)
        except (sqlite3.Error, ValueError):
            return None

    def record(self, commit: str | None, changed: dict[str, Row], removed: Iterable[str], source: dict,
               next_release: str | None, *, replace: bool = False, legacy: str | None = None) -> None:
        """Make the stored state describe `commit`: `changed` rows written, `removed` paths dropped
        (or, with `replace`, `changed` becomes all rows). One transaction: all of it or none."""
        try:
            self._record(commit, changed, removed, source, next_release, replace, legacy)
        except sqlite3.DatabaseError as error:
            if isinstance(error, sqlite3.OperationalError):  # a full or read-only disk, a lock
                code = errno.ENOSPC if "full" in str(error) else errno.EIO
                raise OSError(code, f"cannot record the sync state: {error}") from None
            # Not a database (a torn or foreign file): start it anew; all content is re-verified.
            self.path.unlink(missing_ok=True)
            if not replace:  # `changed` holds only some rows: fail this sync, the next reads all
                raise OSError(errno.EIO, f"the sync state was damaged and is reset: {error}") from None
            self._record(commit, changed, [], source, next_release, True, legacy)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the state: all of it or none."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def _record(self, commit, changed, removed, source, next_release, replace, legacy) -> None:
        with self._transaction() as db:
            if replace:
                db.execute("DELETE FROM files")
            else:
                db.executemany("DELETE FROM files WHERE path = ?", ((p,) for p in removed))
            db.executemany("INSERT OR REPLACE INTO files (path, version, blob) VALUES (?, ?, ?)",
                           ((p, row.version, row.blob) for p, row in changed.items()))
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [
                ("commit", commit or ""), ("next_release", next_release or ""),
                ("source", json.dumps(source, sort_keys=True, separators=(",", ":"))),
                ("legacy", legacy or "")])

    # -- retracted files (f2git/release.py): held back while the source offers the same version --

    def held(self) -> dict[str, str]:
        """path -> the source's version that was retracted; a sync does not publish it again."""
        if not self.path.exists():
            return {}
        try:
            db = self._connect()
            try:
                return dict(db.execute("SELECT path, version FROM held"))
            finally:
                db.close()
        except sqlite3.Error:
            return {}

    def retracted(self, commit: str | None, removed: Iterable[str], hold: dict[str, str]) -> None:
        """After a history rewrite: the rows of `removed` go, the state names the rewritten
        `commit`, and `hold` (path -> version) is held back. One transaction."""
        with self._transaction() as db:
            db.executemany("DELETE FROM files WHERE path = ?", ((p,) for p in removed))
            db.executemany("INSERT OR REPLACE INTO held (path, version) VALUES (?, ?)", hold.items())
            if commit is not None:
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('commit', ?)", (commit,))

    def unhold(self, paths: Iterable[str]) -> None:
        db = self._connect()
        try:
            db.executemany("DELETE FROM held WHERE path = ?", ((p,) for p in paths))
        finally:
            db.close()

    def forget_legacy(self) -> None:
        db = self._connect()
        try:
            db.execute("UPDATE meta SET value = '' WHERE key = 'legacy'")
        finally:
            db.close()
