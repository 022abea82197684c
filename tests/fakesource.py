"""A test-only source whose listing can be held: tests.memsource's bucket behind a gate.

Register it with `monkeypatch.setitem(connectors.SOURCES, "gated", "tests.fakesource:GatedConnector")`;
a course then names `source = "gated"` and `bucket = "<name>"`. While `GATES[name]` is
closed, list() waits there: a slow LMS, without sleeping.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

from connectors.base import Listing
from tests.memsource import MemoryConnector


@dataclass
class Gate:
    opened: threading.Event = field(default_factory=threading.Event)
    reached: threading.Event = field(default_factory=threading.Event)  # a listing is waiting

    def close(self) -> None:
        self.reached.clear()
        self.opened.clear()

    def open(self) -> None:
        self.opened.set()


GATES: dict[str, Gate] = {}


class GatedConnector(MemoryConnector):
    source = "gated"
    label = "gated memory"

    def list(self, state: Mapping[str, Any]) -> Listing:
        gate = GATES.get(self.options.bucket)
        if gate is not None and not gate.opened.is_set():
            gate.reached.set()
            if not gate.opened.wait(timeout=120):
                raise RuntimeError("test gate never opened")
        return super().list(state)
