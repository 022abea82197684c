"""A test-only source whose released files live in a dict, with counters and faults.

Register it with the `memory_source` fixture (conftest.py); a course then names
`source = "memory"` and `bucket = "<name>"`, and the test edits `BUCKETS[name]`.
"""
from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Mapping

from connectors.base import Connector, Entry, Listing, SourceError


@dataclass
class Bucket:
    files: dict[str, bytes] = field(default_factory=dict)
    lists: int = 0
    opens: int = 0
    fail_listing: str | None = None  # raise SourceError with this text on list()
    fail_open_after: int | None = None  # raise on the open() after this many opens
    lock: threading.Lock = field(default_factory=threading.Lock)


BUCKETS: dict[str, Bucket] = {}


@dataclass
class MemoryOptions:
    bucket: str = ""


class MemoryConnector(Connector):
    source = "memory"
    label = "memory"
    Options = MemoryOptions

    @property
    def bucket(self) -> Bucket:
        return BUCKETS[self.options.bucket]

    def list(self, state: Mapping[str, Any]) -> Listing:
        bucket = self.bucket
        with bucket.lock:
            bucket.lists += 1
        if bucket.fail_listing:
            raise SourceError(bucket.fail_listing)
        return Listing(entries=[Entry(path, len(body), f"v{hash(body)}", ref=path)
                                for path, body in bucket.files.items()])

    def open(self, entry: Entry) -> BinaryIO:
        bucket = self.bucket
        with bucket.lock:
            if bucket.fail_open_after is not None and bucket.opens >= bucket.fail_open_after:
                raise SourceError(f"download of {entry.path} failed")
            bucket.opens += 1
        try:
            return io.BytesIO(bucket.files[entry.ref])
        except KeyError:
            raise SourceError(f"{entry.path} is gone") from None
