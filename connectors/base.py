"""The connector protocol: what every source of course files implements.

A connector knows one API and its release rules. It lists the files a student may
see as entries and opens one entry as a byte stream. It knows nothing of git or of
HTTP serving; the snapshot engine (f2git.snapshot) checks every path it returns.
"""
from __future__ import annotations

import io
import math
import os
import tempfile
import time
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO, Callable, ClassVar, Mapping


@dataclass(frozen=True)
class Entry:
    """One released file."""

    path: str  # relative POSIX path as the source names it; the core normalises and checks it
    size: int | None  # bytes, where the source says
    version: str  # changes whenever the content may have changed (ETag, checksum, mtime+size, updated_at)
    ref: Any = field(default=None, compare=False)  # connector-private handle for open(); never persisted


@dataclass(frozen=True)
class Skipped:
    """A released entry that cannot be written, with the reason a user reads."""

    path: str
    reason: str


@dataclass
class Listing:
    entries: list[Entry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    # Earliest future moment at which the source will release something more (aware, UTC).
    next_release: datetime | None = None
    # Opaque, JSON-serialisable; the core stores it with the snapshot and hands it back.
    state: dict = field(default_factory=dict)
    # The source proved nothing changed since `state` (e.g. HTTP 304): keep the snapshot as it is.
    unchanged: bool = False
    # Items the source's rules might release but f2git cannot decide, so withheld: reason → count
    # (e.g. "grade restriction" → 2). Counts only: their names never leave the connector.
    withheld: dict[str, int] = field(default_factory=dict)
    # None: a full listing. A set (from Connector.list_changes): only these paths were looked at
    # again; `entries` and `skipped` hold what they are now (a path in neither is gone), and
    # every other path is as the listing that returned the `state` passed in said.
    touched: set[str] | None = None
    # list_changes can follow this listing with only what changed (the engine then keeps it).
    follow_up: bool = False


@dataclass
class Traffic:
    """What one sync asked of its source: HTTP requests (retries included) and bytes received."""

    requests: int = 0
    bytes: int = 0


# The engine sets a fresh Traffic for each sync; the shared HTTP session counts into it.
traffic: ContextVar[Traffic | None] = ContextVar("f2git_source_traffic", default=None)


# bytes: the largest API answer (a listing page, not a download) read into memory; the
# course key `max_answer_size` (0 = no cap) sets it per course.
DEFAULT_MAX_ANSWER = 64 * 1024 * 1024

# s over which a body must average `min_read_speed`: long enough for a burst of server
# think time, short enough that a trickling source fails in seconds, not hours.
SLOW_WINDOW = 30.0


class ReadLimits:
    """How long one sync may spend reading its source: an overall deadline (the course's
    `sync_timeout`) and a floor on the speed of every body (`min_read_speed`). A source that
    hangs or sends a byte a second then fails the sync with a clear error instead of holding
    it, and a sync worker, for hours. Per-read timeouts alone cannot: each read succeeds."""

    def __init__(self, timeout: float = 0.0, min_speed: int = 0, max_answer: int = DEFAULT_MAX_ANSWER,
                 clock: Callable[[], float] = time.monotonic):
        self.timeout = timeout
        self.min_speed = min_speed
        self.max_answer = max_answer
        self.clock = clock
        self.deadline = clock() + timeout if timeout > 0 else math.inf

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def check(self, what: str) -> None:
        if self.clock() > self.deadline:
            raise SourceError(f"{what}: stopped after sync_timeout ({self.timeout:g} s); the source is too slow"
                              " or hangs")

    def watch(self, what: str) -> "SpeedWatch":
        return SpeedWatch(self, what)

    def check_answer(self, what: str, size: int) -> None:
        """An answer read into memory may not outgrow `max_answer_size`: one that never ends fails the sync."""
        if self.max_answer and size > self.max_answer:
            raise SourceError(f"{what}: the answer is larger than max_answer_size ({self.max_answer} bytes);"
                              " raise the course's max_answer_size if the source's answers are this large")


class SpeedWatch:
    """Counts one body's bytes as they arrive; too slow or past the deadline is a SourceError."""

    def __init__(self, limits: ReadLimits, what: str):
        self.limits = limits
        self.what = what
        self.window_start = limits.clock()
        self.window_bytes = 0

    def count(self, received: int) -> None:
        self.limits.check(self.what)
        self.window_bytes += received
        now = self.limits.clock()
        elapsed = now - self.window_start
        if elapsed < SLOW_WINDOW:
            return
        if self.window_bytes < self.limits.min_speed * elapsed:
            raise SourceError(f"{self.what}: arrived too slowly ({self.window_bytes} bytes in {elapsed:.0f} s;"
                              f" min_read_speed is {self.limits.min_speed} bytes/s)")
        self.window_start, self.window_bytes = now, 0


# The engine sets the course's limits for each sync; HTTP bodies and opened entries count into them.
read_limits: ContextVar[ReadLimits | None] = ContextVar("f2git_read_limits", default=None)


def current_limits() -> ReadLimits:
    return read_limits.get() or ReadLimits()


class WatchedStream(io.RawIOBase):
    """An opened entry whose reads count into the sync's ReadLimits."""

    def __init__(self, inner: BinaryIO, what: str):
        self.inner = inner
        self.watch = current_limits().watch(what)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self.inner.read(len(buffer))
        self.watch.count(len(chunk))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            self.inner.close()
        super().close()


class SourceError(Exception):
    """The source could not be read completely. The sync fails; the last snapshot stays served.

    Messages are shown to instructors and must never contain a credential.
    """

    next_release: datetime | None = None  # when the source will release what it withholds (an embargo's end)


class AuthError(SourceError):
    """The source rejected the credentials."""


class EntryGone(SourceError):
    """One listed entry went away, or stopped being the file that was listed, between listing
    and reading (a folder being written while it syncs). Not a failure of the sync: the entry
    keeps its last snapshot content (or stays out, if new) and the next sync lists it again.
    Raised by Connector.open(); the message says what happened to it."""


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """"1 file", "2 files": a count with its noun in the right number (English)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def in_words(*parts: str) -> str:
    """The non-empty parts of a description, comma-separated (for Connector.describe)."""
    return ", ".join(part for part in parts if part)


class Connector(AbstractContextManager):
    """Base class. Subclasses set `source`, `label`, `Options` and implement list() and open()."""

    source: ClassVar[str]  # the `source = "…"` name in the config
    label: ClassVar[str]  # how users call the service, for messages ("Canvas")
    # the user fields `hub_username` may name, when the service has a roster (`read_roster`)
    roster_fields: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type]  # dataclass of the course keys this source takes

    def __init__(self, options: Any, *, course: str = "", env: Mapping[str, str] | None = None):
        self.options = options
        self.course = course
        self.env = os.environ if env is None else env
        self._tmpdir: tempfile.TemporaryDirectory | None = None

    @classmethod
    def describe(cls, options: Any) -> str:
        """Where a course's files come from, in words for instructors; never a credential or query."""
        return ""

    def secret(self, variable: str) -> str:
        """The value of the environment variable a `*_env` key names."""
        if not variable:
            return ""
        try:
            return self.env[variable]
        except KeyError:
            raise SourceError(f"environment variable {variable} is not set") from None

    def scratch_dir(self) -> str:
        """A private temporary folder, removed by close()."""
        if self._tmpdir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix=f"f2git-{self.source}-")
        return self._tmpdir.name

    def list(self, state: Mapping[str, Any]) -> Listing:
        """Every released entry, complete, or raise SourceError. `state` is the last Listing.state."""
        raise NotImplementedError

    def list_changes(self, state: Mapping[str, Any]) -> Listing | None:
        """Only what changed since the listing that returned `state` (see Listing.touched), when
        the source can tell that without listing everything; None: call list()."""
        return None

    def open(self, entry: Entry) -> BinaryIO:
        """A readable binary stream of the entry's bytes (a context manager). Raise SourceError on failure."""
        raise NotImplementedError

    def check(self) -> str:
        """Try the credentials and the listing; return a one-line summary for `f2git check`."""
        listing = self.list({})
        withheld = ", ".join(f"{count} × {reason}" for reason, count in sorted(listing.withheld.items()))
        return counted(len(listing.entries), "released file") + (f"; withheld: {withheld}" if withheld else "")

    def close(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __exit__(self, *exc_info):
        self.close()
        return None
