"""The connector protocol: what every source of course files implements.

A connector knows one API and its release rules. It lists the files a student may
see as entries and opens one entry as a byte stream. It knows nothing of git or of
HTTP serving; the snapshot engine (f2git.snapshot) checks every path it returns.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO, ClassVar, Mapping


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


@dataclass
class Traffic:
    """What one sync asked of its source: HTTP requests (retries included) and bytes received."""

    requests: int = 0
    bytes: int = 0


# The engine sets a fresh Traffic for each sync; the shared HTTP session counts into it.
traffic: ContextVar[Traffic | None] = ContextVar("f2git_source_traffic", default=None)


class SourceError(Exception):
    """The source could not be read completely. The sync fails; the last snapshot stays served.

    Messages are shown to instructors and must never contain a credential.
    """


class AuthError(SourceError):
    """The source rejected the credentials."""


def in_words(*parts: str) -> str:
    """The non-empty parts of a description, comma-separated (for Connector.describe)."""
    return ", ".join(part for part in parts if part)


class Connector(AbstractContextManager):
    """Base class. Subclasses set `source`, `label`, `Options` and implement list() and open()."""

    source: ClassVar[str]  # the `source = "…"` name in the config
    label: ClassVar[str]  # how users call the service, for messages ("Canvas")
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

    def open(self, entry: Entry) -> BinaryIO:
        """A readable binary stream of the entry's bytes (a context manager). Raise SourceError on failure."""
        raise NotImplementedError

    def check(self) -> str:
        """Try the credentials and the listing; return a one-line summary for `f2git check`."""
        listing = self.list({})
        return f"{len(listing.entries)} released files"

    def close(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __exit__(self, *exc_info):
        self.close()
        return None
